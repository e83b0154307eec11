"""``objdet oid-challenge-eval``: Open Images challenge metrics from the challenge CSV files."""

from __future__ import annotations

import argparse
from typing import Any


def register(subcommands: Any) -> None:
    parser = subcommands.add_parser(
        "oid-challenge-eval",
        help="Open Images challenge detection / instance segmentation metrics from CSV files",
        description=(
            "Evaluate Open Images challenge predictions (the OD API's "
            "oid_challenge_evaluation.py). With --input_annotations_segm the instance "
            "segmentation metric is computed, else the detection metric."
        ),
    )
    parser.add_argument(
        "--input_annotations_boxes",
        required=True,
        help="CSV of ground truth boxes (hierarchy-expanded)",
    )
    parser.add_argument(
        "--input_annotations_labels",
        required=True,
        help="CSV of verified image-level labels (hierarchy-expanded)",
    )
    parser.add_argument(
        "--input_class_labelmap", required=True, help="label map .pbtxt of the challenge classes"
    )
    parser.add_argument("--input_predictions", required=True, help="CSV of predictions")
    parser.add_argument("--output_metrics", required=True, help="CSV file to write metrics to")
    parser.add_argument(
        "--input_annotations_segm",
        default=None,
        help="CSV of ground truth instance masks (optional)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from objdet.evaluation.oid_csv import evaluate_challenge
    from objdet.evaluation.reports import write_metrics_csv

    result = evaluate_challenge(
        args.input_annotations_boxes,
        args.input_annotations_labels,
        args.input_class_labelmap,
        args.input_predictions,
        args.input_annotations_segm,
    )
    write_metrics_csv(args.output_metrics, result.metrics)
    summary = next(iter(result.metrics.items()))
    print(f"{summary[0]}: {summary[1]:.4f}")
    print(
        f"evaluated {result.num_images} images; skipped "
        f"{result.num_prediction_images_without_ground_truth} prediction images without "
        f"ground truth; wrote {args.output_metrics}"
    )
    return 0
