"""``objdet import-checkpoint``: an OD API TF2 checkpoint (e.g. from the TF2 zoo) -> an objdet
model directory, without TensorFlow.

objdet import-checkpoint --pipeline_config_path pipeline.config \\
    --checkpoint checkpoint/ckpt-0 --output_dir imported
"""

from __future__ import annotations

import argparse
from typing import Any


def register(subcommands: Any) -> None:
    parser = subcommands.add_parser(
        "import-checkpoint", help="convert an OD API TF2 checkpoint into an objdet model directory"
    )
    parser.add_argument("--pipeline_config_path", required=True,
                        help="the pipeline.config the checkpoint was trained with")
    parser.add_argument("--checkpoint", required=True,
                        help="TF2 checkpoint prefix (DIR/ckpt-0) or its directory")
    parser.add_argument("--output_dir", required=True,
                        help="model directory to write (pipeline.config + ckpt-0.pt)")
    parser.add_argument("--override", action="append", default=[], metavar="FIELD=VALUE",
                        help="config override, e.g. model.ssd.num_classes=3 (repeatable)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from objdet.engine.tf2_import import import_tf2_checkpoint

    result = import_tf2_checkpoint(args.pipeline_config_path, args.checkpoint, args.output_dir,
                                   overrides=tuple(args.override))
    print(f"imported {len(result.report.loaded)} tensors from {args.checkpoint} "
          f"({len(result.report.not_restored)} non-model variables skipped, e.g. optimizer "
          f"slots) to {result.checkpoint_path}")
    return 0
