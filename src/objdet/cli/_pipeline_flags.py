"""The pipeline-config flags shared by ``objdet train``, ``eval`` and ``export``."""

from __future__ import annotations

import argparse
from typing import Any


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """--pipeline_config_path, --config_override and --override, shared by train/eval/export."""
    parser.add_argument("--pipeline_config_path", required=True, help="pipeline.config (text, JSON or YAML)")
    parser.add_argument(
        "--config_override", default=None,
        help="a text-format TrainEvalPipelineConfig snippet merged into the config",
    )
    parser.add_argument(
        "--override", action="append", default=[], metavar="KEY=VALUE",
        help="set one field, e.g. train_config.batch_size=8 (repeatable)",
    )


def load_config(args: argparse.Namespace) -> Any:
    import objdet.config

    config = objdet.config.load(
        args.pipeline_config_path, overrides=args.override, config_override_text=args.config_override
    )
    objdet.config.validate(config, args.pipeline_config_path)
    return config
