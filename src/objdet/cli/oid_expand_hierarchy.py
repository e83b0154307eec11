"""``objdet oid-expand-hierarchy``: expand Open Images annotations along the label hierarchy."""

from __future__ import annotations

import argparse
from typing import Any


def register(subcommands: Any) -> None:
    parser = subcommands.add_parser(
        "oid-expand-hierarchy",
        help="add ancestor labels to OID boxes / labels (the challenge evaluation needs it)",
        description=(
            "Expand Open Images annotations hierarchically (the OD API's "
            "oid_hierarchical_labels_expansion.py): boxes/segments and verified-present labels "
            "are copied to every ancestor class, verified-absent labels to every descendant."
        ),
    )
    parser.add_argument(
        "--json_hierarchy_file",
        required=True,
        help="label hierarchy JSON (LabelName / Subcategory tree)",
    )
    parser.add_argument("--input_annotations", required=True, help="input CSV file")
    parser.add_argument("--output_annotations", required=True, help="output CSV file")
    parser.add_argument(
        "--annotation_type",
        required=True,
        type=int,
        choices=(1, 2),
        help="1: boxes or segments, 2: image-level labels",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from objdet.evaluation.open_images import expand_annotations_csv

    read, written = expand_annotations_csv(
        args.json_hierarchy_file,
        args.input_annotations,
        args.output_annotations,
        args.annotation_type,
    )
    print(f"read {read} rows, wrote {written} rows to {args.output_annotations}")
    return 0
