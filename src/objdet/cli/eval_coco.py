"""``objdet eval-coco``: COCO metrics of a results JSON against a ground-truth JSON.

objdet eval-coco --gt instances_val2017.json --dt detections.json
objdet eval-coco --gt person_keypoints_val2017.json --dt kp.json --iou_type keypoints

Prints one JSON object: the OD API's metric names (``DetectionBoxes_Precision/mAP``, ...)
and, under ``"stats"``, pycocotools' ``COCOeval.stats`` list in its order. Numbers equal
pycocotools' exactly.
"""

from __future__ import annotations

import argparse
import json


def register(subcommands: argparse._SubParsersAction) -> None:
    parser = subcommands.add_parser(
        "eval-coco", help="COCO bbox/segm/keypoint metrics of a results JSON (pycocotools-exact)"
    )
    parser.add_argument("--gt", required=True, metavar="PATH", help="COCO ground-truth JSON")
    parser.add_argument("--dt", required=True, metavar="PATH", help="COCO results JSON (a list)")
    parser.add_argument(
        "--iou_type", default="bbox", choices=("bbox", "segm", "keypoints"),
        help="what to match on (default: bbox)",
    )
    parser.add_argument(
        "--include_metrics_per_category", action="store_true",
        help="add PerformanceByCategory/mAP/<name> for every category",
    )
    parser.add_argument(
        "--all_metrics_per_category", action="store_true",
        help="with --include_metrics_per_category: all 12 stats per category",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from objdet.evaluation.coco_bulk import METRIC_PREFIX, evaluate_coco_files
    from objdet.evaluation.coco_run import named_metrics

    result, ground_truth = evaluate_coco_files(args.gt, args.dt, args.iou_type)
    names = {i: ground_truth.category_names[c] for i, c in enumerate(ground_truth.category_ids)}
    metrics = named_metrics(
        result, names, args.include_metrics_per_category, args.all_metrics_per_category
    )
    output: dict[str, object] = {
        METRIC_PREFIX[args.iou_type] + name: value for name, value in metrics.items()
    }
    output["stats"] = [float(value) for value in result.stats]
    print(json.dumps(output, indent=2))
    return 0
