"""Character and word error rates (edit distances by ``rapidfuzz``).

Texts are compared after normalizing whitespace: runs of spaces become one space, lines are
stripped and empty lines dropped (a reader is not blamed for a trailing blank line).
CER = character edits / reference characters (newlines between lines count as characters);
WER = word edits / reference words. Over several pages: total edits / total reference length.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rapidfuzz.distance import Levenshtein


def normalize_text(text: str) -> str:
    lines = (" ".join(line.split()) for line in text.splitlines())
    return "\n".join(line for line in lines if line)


@dataclass
class ErrorCounts:
    char_edits: int = 0
    chars: int = 0
    word_edits: int = 0
    words: int = 0

    def add(self, reference: str, hypothesis: str) -> None:
        reference, hypothesis = normalize_text(reference), normalize_text(hypothesis)
        self.char_edits += Levenshtein.distance(reference, hypothesis)
        self.chars += len(reference)
        reference_words, hypothesis_words = reference.split(), hypothesis.split()
        self.word_edits += Levenshtein.distance(reference_words, hypothesis_words)
        self.words += len(reference_words)

    @property
    def cer(self) -> float:
        return self.char_edits / self.chars if self.chars else float(self.char_edits > 0)

    @property
    def wer(self) -> float:
        return self.word_edits / self.words if self.words else float(self.word_edits > 0)


def error_rates(references: Sequence[str], hypotheses: Sequence[str]) -> ErrorCounts:
    """Totals over pages (``references[i]`` is the true text of ``hypotheses[i]``)."""
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    counts = ErrorCounts()
    for reference, hypothesis in zip(references, hypotheses):
        counts.add(reference, hypothesis)
    return counts


def cer(reference: str, hypothesis: str) -> float:
    return error_rates([reference], [hypothesis]).cer


def wer(reference: str, hypothesis: str) -> float:
    return error_rates([reference], [hypothesis]).wer
