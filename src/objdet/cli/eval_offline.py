"""``objdet eval-offline``: metrics of detections stored in TFRecords (offline_eval_map_corloc)."""

from __future__ import annotations

import argparse
from typing import Any


def register(subcommands: Any) -> None:
    parser = subcommands.add_parser(
        "eval-offline",
        help="evaluate detections stored in TFRecords (image/detection/*); writes metrics.csv",
        description=(
            "Evaluate precomputed detections stored in TFRecords next to the ground truth "
            "(the OD API's offline_eval_map_corloc.py). Writes EVAL_DIR/metrics.csv. As there, "
            "a record is evaluated when its image/source_id, ground truth and "
            "image/detection/* lists are all present (empty lists included) and skipped "
            "otherwise; skips are counted and reported."
        ),
    )
    parser.add_argument("--eval_dir", required=True, help="directory to write metrics.csv to")
    parser.add_argument(
        "--eval_config_path", required=True, help="EvalConfig text proto (metrics_set, ...)"
    )
    parser.add_argument(
        "--input_config_path",
        required=True,
        help="InputReader text proto (tf_record_input_reader.input_path, label_map_path)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from objdet.evaluation.offline import run_offline_evaluation
    from objdet.evaluation.reports import per_category_table

    result = run_offline_evaluation(args.eval_dir, args.eval_config_path, args.input_config_path)
    for name, value in result.metrics.items():
        if "PerformanceByCategory" not in name:
            print(f"{name}: {value:.4f}")
    print(per_category_table(result.metrics), end="")
    skipped = f" ({result.skip_summary()})" if result.num_skipped else ""
    print(
        f"evaluated {result.num_images} images, skipped {result.num_skipped} records{skipped}; "
        f"wrote {args.eval_dir}/metrics.csv"
    )
    return 0
