"""``objdet convert FORMAT ...``: datasets -> sharded TFRecords of tf.Examples, and back.

Source formats (flag names follow the OD API's create_*_tf_record.py scripts):

  objdet convert csv   --csv_path F --images_dir D --label_map_path L --output_path OUT
  objdet convert voc   --data_dir D [--year VOC2007 --set train | --images_dir I]
                       --label_map_path L --output_path OUT [--ignore_difficult_instances]
  objdet convert coco  --image_dir D --annotations_file F --output_path OUT [--include_masks]
  objdet convert oid   --input_box_annotations_csv F --input_images_directory D
                       --input_label_map L [--input_image_label_annotations_csv F]
                       --output_tf_record_path_prefix OUT
  objdet convert kitti --data_dir D --label_map_path L --output_path OUT
                       (writes OUT_train.tfrecord and OUT_val.tfrecord)
  objdet convert yolo  --images_dir D --labels_dir D (--names_file F | --label_map_path L)
                       --output_path OUT

Every source format takes ``--num_shards N`` (OUT-0000k-of-0000N files) and
``--skip_invalid`` (skip invalid boxes and unreadable images, counted in the summary, instead
of stopping at the first). Writers, from TFRecords back to a dataset directory:

  objdet convert tfrecord-to-coco|tfrecord-to-voc|tfrecord-to-yolo
                 --input_path RECORDS --label_map_path L --output_path DIR

Every image is checked as it is read: it must decode, be the size its annotation (or the
record's image/height and image/width) declares, and have at most ``--max_image_pixels``
pixels (default $OBJDET_MAX_IMAGE_PIXELS or 89478485; 0: no limit).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from objdet.cli._image_flags import add_max_image_pixels_flag

WRITER_FORMATS = ("coco", "voc", "yolo")


def register(subcommands: Any) -> None:
    parser = subcommands.add_parser(
        "convert",
        help="convert a dataset to sharded TFRecords, or TFRecords back to COCO/VOC/YOLO",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    formats = parser.add_subparsers(dest="format", metavar="FORMAT", required=True)
    for name, (help_text, add_flags, read) in SOURCE_FORMATS.items():
        source = formats.add_parser(name, help=help_text)
        add_flags(source)
        source.add_argument(
            "--skip_invalid",
            action="store_true",
            help="skip (and count) invalid boxes and unreadable images",
        )
        add_max_image_pixels_flag(source)
        source.set_defaults(run=run_source, read=read)
    for name in WRITER_FORMATS:
        writer = formats.add_parser(
            f"tfrecord-to-{name}", help=f"write TFRecords as a {name} dataset"
        )
        writer.add_argument(
            "--input_path", required=True, help="TFRecords: file, glob, base@N or list"
        )
        writer.add_argument("--label_map_path", required=True, help="label_map.pbtxt")
        writer.add_argument("--output_path", required=True, help="output dataset directory")
        add_max_image_pixels_flag(writer)
        writer.set_defaults(run=run_writer, writer_format=name)


def _shards(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--num_shards", type=int, default=1, help="number of output shards")


def _add_csv_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--csv_path", required=True, help="CSV with one row per box")
    parser.add_argument("--images_dir", required=True, help="directory of the image files")
    parser.add_argument("--label_map_path", required=True)
    parser.add_argument("--output_path", required=True, help="output TFRecord path")
    _shards(parser)


def _add_voc_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data_dir", required=True, help="root of the VOCdevkit")
    parser.add_argument("--set", default="train", help="train, val, trainval or test")
    parser.add_argument(
        "--annotations_dir",
        default="Annotations",
        help="annotations directory (relative to DATA_DIR/YEAR, or to DATA_DIR with --images_dir)",
    )
    parser.add_argument("--year", default="VOC2007", help="VOC2007, VOC2012 or merged")
    parser.add_argument(
        "--images_dir",
        default=None,
        help="flat layout: images here, every *.xml in DATA_DIR/ANNOTATIONS_DIR "
        "(--year and --set are then not used)",
    )
    parser.add_argument("--output_path", required=True)
    parser.add_argument("--label_map_path", required=True)
    parser.add_argument(
        "--ignore_difficult_instances",
        action="store_true",
        help="leave out objects marked difficult (counted)",
    )
    _shards(parser)


def _add_coco_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--image_dir", required=True)
    parser.add_argument("--annotations_file", required=True, help="COCO instances JSON")
    parser.add_argument("--output_path", required=True)
    parser.add_argument(
        "--label_map_path",
        default=None,
        help="map category names to this label map (default: the JSON's ids)",
    )
    parser.add_argument("--include_masks", action="store_true", help="write instance masks")
    _shards(parser)


def _add_oid_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input_box_annotations_csv", required=True)
    parser.add_argument("--input_images_directory", required=True)
    parser.add_argument("--input_label_map", required=True)
    parser.add_argument("--input_image_label_annotations_csv", default=None)
    parser.add_argument("--output_tf_record_path_prefix", required=True)
    parser.add_argument(
        "--skip_labels_not_in_label_map",
        action="store_true",
        help="leave out (and count) rows whose label is not in the label map, "
        "as the OD API does silently",
    )
    _shards(parser)


def _add_kitti_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data_dir", required=True)
    parser.add_argument("--output_path", required=True, help="prefix: OUT_train/val.tfrecord")
    parser.add_argument("--classes_to_use", default="car,pedestrian,dontcare")
    parser.add_argument("--label_map_path", required=True)
    parser.add_argument("--validation_set_size", type=int, default=500)
    _shards(parser)


def _add_yolo_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--images_dir", required=True)
    parser.add_argument("--labels_dir", required=True)
    parser.add_argument("--names_file", default=None, help="class names, line i = class index i")
    parser.add_argument("--label_map_path", default=None)
    parser.add_argument("--output_path", required=True)
    _shards(parser)


# -- building readers: each returns [(reader, output_path), ...] ---------------------------
def _label_map(path: str) -> Any:
    from objdet.structures.label_map import load_label_map

    return load_label_map(path)


def _read_csv(args: argparse.Namespace) -> list[tuple[Any, str]]:
    from objdet.data.formats import CsvReader

    reader = CsvReader(
        args.csv_path,
        args.images_dir,
        _label_map(args.label_map_path),
        skip_invalid=args.skip_invalid,
    )
    return [(reader, args.output_path)]


def _read_voc(args: argparse.Namespace) -> list[tuple[Any, str]]:
    from pathlib import Path

    from objdet.data.formats import VocReader

    label_map = _label_map(args.label_map_path)
    options = {
        "ignore_difficult_instances": args.ignore_difficult_instances,
        "skip_invalid": args.skip_invalid,
    }
    if args.images_dir is not None:
        annotations = Path(args.data_dir) / args.annotations_dir
        reader = VocReader.from_directory(annotations, args.images_dir, label_map, **options)
    else:
        reader = VocReader.from_devkit(
            args.data_dir,
            args.year,
            args.set,
            label_map,
            annotations_dir=args.annotations_dir,
            **options,
        )
    return [(reader, args.output_path)]


def _read_coco(args: argparse.Namespace) -> list[tuple[Any, str]]:
    from objdet.data.formats import CocoReader

    label_map = _label_map(args.label_map_path) if args.label_map_path else None
    reader = CocoReader(
        args.annotations_file,
        args.image_dir,
        label_map,
        include_masks=args.include_masks,
        skip_invalid=args.skip_invalid,
    )
    return [(reader, args.output_path)]


def _read_oid(args: argparse.Namespace) -> list[tuple[Any, str]]:
    from objdet.data.formats import OpenImagesReader

    reader = OpenImagesReader(
        args.input_box_annotations_csv,
        args.input_images_directory,
        _label_map(args.input_label_map),
        image_label_annotations_csv=args.input_image_label_annotations_csv,
        skip_labels_not_in_label_map=args.skip_labels_not_in_label_map,
        skip_invalid=args.skip_invalid,
    )
    return [(reader, args.output_tf_record_path_prefix)]


def _read_kitti(args: argparse.Namespace) -> list[tuple[Any, str]]:
    from objdet.data.formats import KittiReader, kitti_train_val_split

    label_map = _label_map(args.label_map_path)
    classes = [c for c in args.classes_to_use.split(",") if c.strip()]
    train, validation = kitti_train_val_split(args.data_dir, args.validation_set_size)
    return [
        (
            KittiReader(
                args.data_dir,
                label_map,
                image_names=names,
                classes_to_use=classes,
                skip_invalid=args.skip_invalid,
            ),
            f"{args.output_path}_{split}.tfrecord",
        )
        for split, names in (("train", train), ("val", validation))
    ]


def _read_yolo(args: argparse.Namespace) -> list[tuple[Any, str]]:
    from objdet.data.formats import YoloReader, read_names_file
    from objdet.errors import ConfigError

    if args.names_file is None and args.label_map_path is None:
        raise ConfigError("objdet convert yolo needs --names_file or --label_map_path (or both)")
    reader = YoloReader(
        args.images_dir,
        args.labels_dir,
        label_map=_label_map(args.label_map_path) if args.label_map_path else None,
        class_names=read_names_file(args.names_file) if args.names_file else None,
        skip_invalid=args.skip_invalid,
    )
    return [(reader, args.output_path)]


# -- running ------------------------------------------------------------------------------
def run_source(args: argparse.Namespace) -> int:
    import sys

    from objdet.data.formats import convert_to_tfrecord
    from objdet.data.image_decode import set_max_image_pixels

    set_max_image_pixels(args.max_image_pixels)
    for reader, output_path in args.read(args):
        summary = convert_to_tfrecord(
            reader,
            output_path,
            args.num_shards,
            skip_invalid_images=args.skip_invalid,
            progress=sys.stderr.isatty(),
        )
        print(summary.format())
    return 0


def run_writer(args: argparse.Namespace) -> int:
    from objdet.data.formats import export_annotations
    from objdet.data.image_decode import set_max_image_pixels

    set_max_image_pixels(args.max_image_pixels)
    count = export_annotations(
        args.input_path, args.writer_format, args.output_path, _label_map(args.label_map_path)
    )
    print(f"wrote {count} images as {args.writer_format} to {args.output_path}")
    return 0


# format -> (help, flag adder, reader builder); read by register() when the CLI starts.
SOURCE_FORMATS: dict[
    str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[..., Any]]
] = {
    "csv": (
        "CSV box table (filename,width,height,class,xmin,ymin,xmax,ymax)",
        _add_csv_flags,
        _read_csv,
    ),
    "voc": ("PASCAL VOC XML annotations", _add_voc_flags, _read_voc),
    "coco": (
        "COCO instances JSON (boxes, crowd flags, masks, keypoints)",
        _add_coco_flags,
        _read_coco,
    ),
    "oid": ("Open Images box and image-level label CSVs", _add_oid_flags, _read_oid),
    "kitti": ("KITTI label_2 txt (OUT_train / OUT_val records)", _add_kitti_flags, _read_kitti),
    "yolo": ("YOLO txt labels (class cx cy w h, normalized)", _add_yolo_flags, _read_yolo),
}
