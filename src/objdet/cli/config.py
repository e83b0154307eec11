"""``objdet config validate|show``: check pipeline configs, print one as JSON.

objdet config validate pipeline.config other.config     # "OK path" / "FAIL path: why"
objdet config show pipeline.config --override train_config.batch_size=8

``validate`` also reads the label maps the input readers name (syntax, items with names,
num_classes at least the largest label map id), as ``objdet train`` does before it starts;
its exit status is 1 when a config fails. Stdout holds one line per file; warnings (e.g.
num_classes above the largest id: accepted, as by the OD API) go to stderr as
``WARNING path: ...``.
"""

from __future__ import annotations

import argparse
import sys


def register(subcommands: argparse._SubParsersAction) -> None:
    parser = subcommands.add_parser("config", help="validate or show pipeline configs")
    actions = parser.add_subparsers(dest="config_command", metavar="ACTION", required=True)

    validate = actions.add_parser(
        "validate", help="parse and check configs and their label maps; one line per file"
    )
    validate.add_argument("paths", nargs="+", metavar="PATH", help="pipeline config files")
    validate.set_defaults(run=run_validate)

    show = actions.add_parser("show", help="print a config (after overrides) as JSON")
    show.add_argument("path", metavar="PATH", help="pipeline config file (.config, .json, .yaml)")
    show.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set a field by dotted path (train_config.batch_size=8) or shortcut key "
        "(learning_rate=0.01); repeatable",
    )
    show.add_argument(
        "--config_override",
        default=None,
        metavar="TEXT",
        help="text-format TrainEvalPipelineConfig snippet merged into the config (OD API flag)",
    )
    show.set_defaults(run=run_show)


def run_validate(args: argparse.Namespace) -> int:
    from objdet import config as pipeline_config
    from objdet.errors import ConfigError

    failures = 0
    for path in args.paths:
        try:
            warnings = pipeline_config.validate(
                pipeline_config.load(path), path, check_label_maps=True
            )
        except ConfigError as error:
            failures += 1
            message = str(error).removeprefix(f"{path}: ").replace("\n", " ")
            print(f"FAIL {path}: {message}")
        else:
            print(f"OK {path}")
            for warning in warnings:
                print(f"WARNING {warning}", file=sys.stderr)
    return 1 if failures else 0


def run_show(args: argparse.Namespace) -> int:
    from google.protobuf import json_format

    from objdet import config as pipeline_config

    config = pipeline_config.load(args.path, args.override, args.config_override)
    sys.stdout.write(json_format.MessageToJson(config, preserving_proto_field_name=True) + "\n")
    return 0
