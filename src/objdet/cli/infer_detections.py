"""``objdet infer-detections``: add a model's detections to every tf.Example of TFRecords
(the OD API's ``inference/infer_detections.py``), for offline evaluation.

objdet infer-detections --input_tfrecord_paths val-00000-of-00002,val-00001-of-00002 \\
    --output_tfrecord_path detections.record@2 --model exported --discard_image_pixels
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(subcommands: Any) -> None:
    parser = subcommands.add_parser(
        "infer-detections", help="write detections into the tf.Examples of TFRecords",
    )
    parser.add_argument(
        "--input_tfrecord_paths", required=True,
        help="comma-separated TFRecord files (globs and base@N allowed)",
    )
    parser.add_argument(
        "--output_tfrecord_path", required=True,
        help="output TFRecord file; OUT@N writes N shards OUT-0000k-of-0000N",
    )
    parser.add_argument(
        "--model", "--inference_graph", dest="model", required=True,
        help="directory written by `objdet export`",
    )
    parser.add_argument(
        "--discard_image_pixels", action="store_true",
        help="drop image/encoded from the output records",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from objdet.inference.predictor import Predictor
    from objdet.inference.tfrecords import infer_detections

    predictor = Predictor.from_export(args.model)

    def progress(records: int) -> None:
        if records % 100 == 0:
            print(f"{records} records", file=sys.stderr)

    report = infer_detections(
        args.input_tfrecord_paths, args.output_tfrecord_path, predictor,
        discard_image_pixels=args.discard_image_pixels, progress=progress,
    )
    per_second = report.records / report.seconds if report.seconds > 0 else 0.0
    print(
        f"{report.records} records, {report.detections} detections, "
        f"{per_second:.1f} images/s; wrote {', '.join(report.output_paths)}"
    )
    return 0
