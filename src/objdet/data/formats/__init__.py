"""Source dataset formats: readers (format -> ``Sample``s) and writers (``Sample``s -> format).

``READERS`` and ``WRITERS`` are the registries (format name -> class / function). A reader
is a ``Sequence[Sample]`` over its images, usable directly as a dataset or converted with
``convert_to_tfrecord``; a writer takes ``(samples, output_dir, label_map)`` and returns the
number of images written.

    from objdet.data.formats import CsvReader, convert_to_tfrecord
    reader = CsvReader("train_labels.csv", "images", load_label_map("label_map.pbtxt"))
    summary = convert_to_tfrecord(reader, "train.record", num_shards=2)
    print(summary.format())
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from objdet.data.formats.coco import CocoReader, write_coco
from objdet.data.formats.convert import (
    ConversionSummary,
    convert_to_tfrecord,
    export_annotations,
    read_tfrecord_samples,
)
from objdet.data.formats.csv_table import CsvReader
from objdet.data.formats.kitti import KittiReader, kitti_train_val_split
from objdet.data.formats.open_images import OpenImagesReader
from objdet.data.formats.pascal_voc import VocReader, write_voc
from objdet.data.formats.reader import AnnotationReader
from objdet.data.formats.yolo import YoloReader, read_names_file, write_yolo
from objdet.structures.label_map import LabelMap
from objdet.structures.sample import Sample

READERS: dict[str, type[AnnotationReader]] = {
    "csv": CsvReader,
    "voc": VocReader,
    "coco": CocoReader,
    "oid": OpenImagesReader,
    "kitti": KittiReader,
    "yolo": YoloReader,
}

Writer = Callable[[Iterable[Sample], Any, LabelMap], int]

WRITERS: dict[str, Writer] = {
    "coco": write_coco,
    "voc": write_voc,
    "yolo": write_yolo,
}

__all__ = [
    "READERS",
    "WRITERS",
    "AnnotationReader",
    "CocoReader",
    "ConversionSummary",
    "CsvReader",
    "KittiReader",
    "OpenImagesReader",
    "VocReader",
    "YoloReader",
    "convert_to_tfrecord",
    "export_annotations",
    "kitti_train_val_split",
    "read_names_file",
    "read_tfrecord_samples",
    "write_coco",
    "write_voc",
    "write_yolo",
]
