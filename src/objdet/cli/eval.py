"""``objdet eval``: evaluate the checkpoints of a model_dir with eval_config.metrics_set."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from objdet.cli._pipeline_flags import add_config_flags, load_config


def register(subcommands: Any) -> None:
    parser = subcommands.add_parser("eval", help="evaluate the latest (or each new) checkpoint")
    add_config_flags(parser)
    parser.add_argument("--checkpoint_dir", required=True, help="the training model_dir")
    parser.add_argument("--eval_dir", default=None, help="where metrics go (default: CHECKPOINT_DIR/eval)")
    parser.add_argument("--run_once", action="store_true", help="evaluate the latest checkpoint and exit")
    parser.add_argument("--eval_timeout", type=float, default=3600.0,
                        help="seconds to wait for a new checkpoint before exiting")
    parser.add_argument("--device", default=None)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import json

    from objdet.engine.eval_loop import run_eval

    checkpoint_dir = Path(args.checkpoint_dir)
    eval_dir = Path(args.eval_dir) if args.eval_dir else checkpoint_dir / "eval"
    results = run_eval(load_config(args), checkpoint_dir, eval_dir, run_once=args.run_once,
                       timeout_s=args.eval_timeout, device=args.device)
    for step, metrics in results:
        print(json.dumps({"step": step, "metrics": metrics}, sort_keys=True))
    return 0
