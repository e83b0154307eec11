"""The conversion pipeline: source-format readers -> sharded TFRecords, TFRecords -> formats.

``convert_to_tfrecord(reader, output_path, num_shards)`` is what ``objdet convert FORMAT``
runs; ``export_annotations(input_path, format_name, output_dir, label_map)`` is what
``objdet convert tfrecord-to-FORMAT`` runs. Outputs are written atomically (shards appear
only when every record was written; writer directories are renamed into place).
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from objdet.data.formats.annotation import SkipLog
from objdet.data.formats.reader import AnnotationReader
from objdet.errors import DataError, ObjdetError
from objdet.structures.label_map import LabelMap
from objdet.structures.sample import Sample

if TYPE_CHECKING:
    from objdet.data.example import ExampleDecoder

logger = logging.getLogger(__name__)


@dataclass
class ConversionSummary:
    """What a conversion wrote and what it left out (skips are never silent)."""

    output_paths: list[str] = field(default_factory=list)
    images: int = 0
    boxes_per_class: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)  # reason -> count
    filtered: Counter[str] = field(default_factory=Counter)  # format rule -> count
    skip_examples: list[str] = field(default_factory=list)

    @property
    def boxes(self) -> int:
        return sum(self.boxes_per_class.values())

    def format(self) -> str:
        """A human-readable multi-line report."""
        lines = [
            f"wrote {self.images} images, {self.boxes} boxes to {', '.join(self.output_paths)}"
        ]
        for name, count in sorted(self.boxes_per_class.items()):
            lines.append(f"  {name}: {count} boxes")
        for title, counts in (
            ("skipped", self.skipped),
            ("left out by format rules", self.filtered),
        ):
            for reason, count in sorted(counts.items()):
                lines.append(f"{title}: {count} x {reason}")
        if self.skip_examples:
            lines.append("first skips:")
            lines.extend(f"  {line}" for line in self.skip_examples)
        return "\n".join(lines)


def convert_to_tfrecord(
    samples: Sequence[Sample],
    output_path: str | os.PathLike[str],
    num_shards: int = 1,
    *,
    skip_invalid_images: bool = False,
    progress: bool = False,
) -> ConversionSummary:
    """Encode every sample as a tf.Example into ``num_shards`` TFRecord files.

    ``samples`` is usually an ``AnnotationReader``; with ``skip_invalid_images`` an image
    whose file is missing or does not decode (a ``DataError``) is skipped and counted
    instead of stopping the conversion. Label-map errors always stop it. Returns the summary
    (images written, boxes per class, skips).
    """
    from objdet.data.example import encode_sample
    from objdet.data.tfrecord import write_sharded

    summary = ConversionSummary()
    image_skips = SkipLog()
    records = _encoded_records(samples, summary, image_skips, skip_invalid_images, progress)
    summary.output_paths = write_sharded(
        (encode_sample(s) for s in records), output_path, num_shards
    )
    _collect_skips(summary, samples, image_skips)
    return summary


def _encoded_records(
    samples: Sequence[Sample],
    summary: ConversionSummary,
    image_skips: SkipLog,
    skip_invalid_images: bool,
    progress: bool,
) -> Iterator[Sample]:
    """Each readable sample in order, counted into ``summary`` as it goes."""
    from tqdm import tqdm

    label_map = samples.label_map if isinstance(samples, AnnotationReader) else None
    with tqdm(total=len(samples), unit="image", disable=not progress, leave=False) as bar:
        for index in range(len(samples)):
            bar.update(1)
            try:
                sample = samples[index]
            except DataError as error:
                if not skip_invalid_images:
                    raise
                # The error names the file and the problem: keep it as the location.
                image_skips.add(str(error), "image skipped (missing, undecodable or invalid)")
                continue
            summary.images += 1
            for label in sample.labels.tolist():
                name = label_map.item(label).label if label_map is not None else str(label)
                summary.boxes_per_class[name] += 1
            yield sample


def _collect_skips(
    summary: ConversionSummary, samples: Sequence[Sample], image_skips: SkipLog
) -> None:
    logs = [image_skips]
    if isinstance(samples, AnnotationReader):
        if samples.skip_log is not None:
            logs.append(samples.skip_log)
        summary.filtered.update(samples.filtered.counts())
    for log in logs:
        summary.skipped.update(log.counts())
        summary.skip_examples.extend(log.examples())


def read_tfrecord_samples(
    input_path: str | os.PathLike[str],
    label_map: LabelMap | None = None,
    decoder: ExampleDecoder | None = None,
) -> Iterator[Sample]:
    """Samples from TFRecords of tf.Examples, image bytes kept as they are.

    Each image is proven to decode (a JPEG at 1/8 scale) and to be the size that
    image/height and image/width declare: a writer must not copy out an image that training
    would reject. ``decoder`` (default: one without detections) may be passed in to read its
    ``class_id_conflicts`` afterwards.
    """
    from objdet.data.example import ExampleDecoder
    from objdet.data.image_decode import verify_image_bytes
    from objdet.data.tfrecord import read_records_with_source

    if decoder is None:
        decoder = ExampleDecoder(label_map, decode_image=False, with_detections=False)
    for source, record in read_records_with_source(os.fspath(input_path)):
        sample = decoder(record, source)
        if sample.encoded_image is None:
            raise DataError(f"{source}: image/encoded is missing; there is no image to write")
        header = verify_image_bytes(sample.encoded_image, f"{source}: image/encoded")
        if (header.height, header.width) != (sample.height, sample.width):
            raise DataError(
                f"{source}: image/height x image/width is {sample.height}x{sample.width} but "
                f"the encoded image is {header.height}x{header.width}"
            )
        yield sample


def export_annotations(
    input_path: str | os.PathLike[str],
    format_name: str,
    output_dir: str | os.PathLike[str],
    label_map: LabelMap,
) -> int:
    """Write the TFRecords at ``input_path`` as a ``format_name`` dataset (coco/voc/yolo).

    Returns the number of images written. Records whose class/label disagrees with their
    class/text are written with the text's id and counted in one warning at the end.
    """
    from objdet.data.example import ExampleDecoder
    from objdet.data.formats import WRITERS

    if format_name not in WRITERS:
        raise ObjdetError(f"no writer for format {format_name!r}; writers: {sorted(WRITERS)}")
    decoder = ExampleDecoder(label_map, decode_image=False, with_detections=False)
    samples = read_tfrecord_samples(input_path, label_map, decoder)
    written = WRITERS[format_name](samples, output_dir, label_map)
    if decoder.class_id_conflicts.records:
        logger.warning("%s: %s", os.fspath(input_path), decoder.class_id_conflicts.summary())
    return written
