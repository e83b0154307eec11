"""The accepted annotations of a project, written as a dataset.

``EXPORT_FORMATS``: ``tfrecord`` (tf.Examples exactly as ``objdet convert`` writes them:
the same ``build_sample`` and ``convert_to_tfrecord``), ``coco``, ``voc``, ``yolo`` (the
``objdet.data.formats`` writers) and ``jsonl`` (Prodigy's image task format: one task per
line with ``"answer"`` and ``"spans"``; it lists every answer, rejected and ignored too).
Each image's newest answer counts; only ``accept`` answers are exported as datasets.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from objdet.annotate.sources import ImageSource
from objdet.annotate.store import Answer, AnswerStore
from objdet.atomic import atomic_write
from objdet.errors import DataError, ObjdetError
from objdet.structures.label_map import LabelMap
from objdet.structures.sample import Sample

EXPORT_FORMATS = ("tfrecord", "coco", "voc", "yolo", "jsonl")


@dataclass
class AcceptedSamples:
    """Samples of the accepted answers, and the images that could not be read (skipped)."""

    samples: list[Sample] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def answer_sample(answer: Answer, source: ImageSource, label_map: LabelMap) -> Sample:
    """One answer as a ``Sample`` (its image's bytes as stored, its final boxes)."""
    from objdet.data.formats.annotation import AnnotatedObject, build_sample
    from objdet.data.formats.image_file import inspect_image_bytes

    image_bytes = source.read(answer.image_key)
    image = inspect_image_bytes(image_bytes.encoded, source.path_of(answer.image_key))
    objects = [
        AnnotatedObject(box=tuple(box), label_text=label_map.item(label_id).name,  # type: ignore[arg-type]
                        location=f"answer {answer.id} ({answer.image_key}) box {index}",
                        label_id=label_id)
        for index, (box, label_id) in enumerate(zip(answer.boxes, answer.label_ids))
    ]
    return build_sample(image, objects, label_map, filename=Path(image_bytes.filename).name,
                        source_id=answer.image_key)


def accepted_samples(store: AnswerStore, source: ImageSource, label_map: LabelMap,
                     answers: list[Answer] | None = None) -> AcceptedSamples:
    """The accepted answers (default: every image's newest answer that is ``accept``)."""
    result = AcceptedSamples()
    for answer in answers if answers is not None else store.answers(answer="accept"):
        try:
            result.samples.append(answer_sample(answer, source, label_map))
        except DataError as error:
            result.skipped.append(str(error))
    return result


def export_project(store: AnswerStore, source: ImageSource, label_map: LabelMap,
                   format_name: str, output: str | os.PathLike[str]) -> int:
    """Write the project's annotations as ``format_name`` to ``output`` (a TFRecord or JSONL
    file, or a folder for coco/voc/yolo); returns the number of images written."""
    if format_name not in EXPORT_FORMATS:
        raise ObjdetError(f"--format: {format_name!r}; expected one of {', '.join(EXPORT_FORMATS)}")
    if format_name == "jsonl":
        return write_jsonl(store, source, label_map, output)
    accepted = accepted_samples(store, source, label_map)
    if accepted.skipped:
        raise DataError(f"{len(accepted.skipped)} accepted image(s) cannot be read any more, e.g. "
                        f"{accepted.skipped[0]}")
    if format_name == "tfrecord":
        from objdet.data.formats import convert_to_tfrecord

        Path(output).absolute().parent.mkdir(parents=True, exist_ok=True)
        return convert_to_tfrecord(accepted.samples, output, num_shards=1).images
    from objdet.data.formats import WRITERS

    return WRITERS[format_name](accepted.samples, output, label_map)


def prodigy_task(answer: Answer, source: ImageSource, label_map: LabelMap,
                 width: int | None, height: int | None) -> dict[str, object]:
    """One answer in Prodigy's image format (``spans`` of rectangles with ``points``)."""
    spans = []
    for box, label_id in zip(answer.boxes, answer.label_ids):
        x1, y1, x2, y2 = box
        spans.append({
            "label": label_map.item(label_id).name, "label_id": label_id, "type": "rect",
            "points": [[x1, y1], [x1, y2], [x2, y2], [x2, y1]],
            "x": x1, "y": y1, "width": x2 - x1, "height": y2 - y1,
        })
    return {
        "image": source.path_of(answer.image_key), "width": width, "height": height,
        "spans": spans, "answer": answer.answer,
        "_session_id": answer.session, "_annotator_id": answer.session,
        "_timestamp": int(answer.answered_at),
        "meta": {"key": answer.image_key, "model_version": answer.model_version},
    }


def jsonl_lines(store: AnswerStore, source: ImageSource, label_map: LabelMap) -> list[str]:
    sizes = {row.id: (row.width, row.height) for row in store.images()}
    return [json.dumps(prodigy_task(answer, source, label_map, *sizes.get(answer.image_id, (None, None))))
            for answer in store.answers()]


def write_jsonl(store: AnswerStore, source: ImageSource, label_map: LabelMap,
                output: str | os.PathLike[str]) -> int:
    lines = jsonl_lines(store, source, label_map)
    Path(output).absolute().parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(output, "w") as handle:
        handle.write("".join(line + "\n" for line in lines))
    return len(lines)
