"""``Suggester``: the newest exported version of the project's model, and its predictions.

The trainer writes each new checkpoint as ``<model_dir>/export/<version>/`` (TF Serving's
base-path layout, ``objdet.export``). A thread polls that folder; a new version is loaded
beside the current one and swapped in only once it loaded, so suggestions switch without a
restart and a broken version never replaces a working one. Version 0 means no model of the
project's yet (one trained from scratch, before its first round): the suggestions come from
the ``initial`` model when there is one (``objdet.annotate.initial_model``), else there are
none.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from objdet.annotate.initial_model import InitialModel

logger = logging.getLogger(__name__)

EXPORT_FOLDER = "export"


@dataclass(frozen=True)
class Suggestion:
    """One predicted box: ``box_xyxy`` absolute pixels, label-map id, score."""

    box_xyxy: tuple[float, float, float, float]
    label_id: int
    score: float


class Suggester:
    """Predictions of the newest loaded version (thread-safe)."""

    def __init__(self, export_base: Path, *, min_score: float = 0.05, max_boxes: int = 50,
                 poll_seconds: float = 1.0, initial: InitialModel | None = None) -> None:
        self.export_base = export_base
        self.initial = initial
        self.min_score = min_score
        self.max_boxes = max_boxes
        self.poll_seconds = poll_seconds
        self.version = 0
        self.load_error: str | None = None
        self._predictor: Any = None
        self._failed: set[int] = set()
        self._lock = threading.Lock()  # one prediction at a time: torch shares its threads
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.poll()
        self._thread = threading.Thread(target=self._poll_loop, name="annotate-versions", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _poll_loop(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.poll()
            except Exception:
                logger.exception("polling %s", self.export_base)

    def poll(self) -> bool:
        """Load the newest version when it is newer than the current one; True if swapped."""
        from objdet.export.exporter import export_versions
        from objdet.inference.predictor import Predictor

        versions = {v: d for v, d in export_versions(self.export_base).items() if v not in self._failed}
        if not versions or max(versions) <= self.version:
            return False
        newest = max(versions)
        try:
            predictor = Predictor.from_export(versions[newest], use_graph=False)
        except Exception as error:  # noqa: BLE001 - a broken version is recorded, never served
            self._failed.add(newest)
            self.load_error = f"version {newest}: {error}"
            logger.error("annotate: cannot load %s: %s", versions[newest], error)
            return False
        with self._lock:
            self._predictor, self.version = predictor, newest
        logger.info("annotate: suggestions now from version %d", newest)
        return True

    def predict(self, pixels: Any) -> tuple[int, list[Suggestion]]:
        """``uint8 [3, H, W]`` -> (version, suggestions scoring >= min_score, best first)."""
        with self._lock:
            predictor, version = self._predictor, self.version
            if predictor is not None:
                detections = predictor.predict_pixels(pixels).above(self.min_score)
            elif self.initial is not None:
                detections = self.initial.predict(pixels).above(self.min_score)
            else:
                return 0, []
        suggestions = [
            Suggestion(tuple(float(v) for v in box), int(label), float(score))  # type: ignore[arg-type]
            for box, label, score in zip(detections.boxes, detections.labels, detections.scores)
        ]
        suggestions.sort(key=lambda s: -s.score)
        return version, suggestions[: self.max_boxes]

    def model_name(self, version: int) -> str:
        """What made the suggestions of ``version``, for people: "v3", the initial model's
        name for version 0 when there is one, else "none"."""
        from objdet.annotate.initial_model import describe

        if version > 0:
            return f"v{version}"
        return f"starting model {describe(self.initial.spec)}" if self.initial is not None else "none"


def uncertainty(suggestions: list[Suggestion]) -> float:
    """How unsure the model is about an image: the largest binary entropy (bits) of its
    scores. An image with no suggestion at all scores 0.5: it may hold missed objects."""
    if not suggestions:
        return 0.5
    return max(_entropy(s.score) for s in suggestions)


def _entropy(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return -(p * math.log2(p) + (1 - p) * math.log2(1 - p))
