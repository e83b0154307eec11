"""``objdet train``: train from a pipeline config (the OD API's model_main_tf2.py flags)."""

from __future__ import annotations

import argparse
from typing import Any

from objdet.cli._pipeline_flags import add_config_flags, load_config


def register(subcommands: Any) -> None:
    parser = subcommands.add_parser("train", help="train a detector from a pipeline config")
    add_config_flags(parser)
    parser.add_argument("--model_dir", required=True, help="where checkpoints and summaries go")
    parser.add_argument("--num_train_steps", type=int, default=None, help="overrides train_config.num_steps")
    parser.add_argument("--checkpoint_every_n", type=int, default=1000, help="steps between checkpoints")
    parser.add_argument("--eval_every_n", type=int, default=0,
                        help="steps between evaluations on eval_input_reader (0: only at the end)")
    parser.add_argument("--keep_checkpoints", type=int, default=5, help="newest checkpoints kept (plus the best)")
    parser.add_argument("--num_workers", type=int, default=2, help="data loader worker processes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import logging

    from objdet.engine.training import TrainOptions, train

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    options = TrainOptions(
        num_train_steps=args.num_train_steps, checkpoint_every_n=args.checkpoint_every_n,
        eval_every_n=args.eval_every_n, keep_checkpoints=args.keep_checkpoints,
        num_workers=args.num_workers, seed=args.seed, device=args.device,
        show_progress=not args.no_progress,
    )
    result = train(load_config(args), args.model_dir, options,
                   config_source=args.pipeline_config_path)
    print(f"trained to step {result.step} in {result.model_dir}")
    for step, metrics in result.eval_history[-1:]:
        headline = {k: round(v, 4) for k, v in metrics.items() if "PerformanceByCategory" not in k}
        print(f"eval at step {step}: {headline}")
    return 0
