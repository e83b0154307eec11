"""``objdet demo``: the main job on the bundled raccoon dataset (what ``make demo`` runs)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(subcommands: Any) -> None:
    parser = subcommands.add_parser(
        "demo", help="convert, train, evaluate, export and detect on the raccoon dataset"
    )
    parser.add_argument("--output_dir", default="out/demo", help="where records, model, export and drawings go")
    parser.add_argument("--pipeline_config_path", default=None,
                        help="default: the main job's config shipped in the package")
    parser.add_argument("--dataset_dir", default=None,
                        help="default: the raccoon dataset shipped in the package")
    parser.add_argument("--num_train_steps", type=int, default=None, help="overrides the config's num_steps")
    parser.add_argument("--num_workers", type=int, default=1, help="data loader worker processes")
    parser.add_argument("--seed", type=int, default=0,
                        help="seeds initialization, shuffling and augmentation (RESULTS.md has several)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import logging

    from objdet.demo import run_demo

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    result = run_demo(Path(args.output_dir), _optional_path(args.pipeline_config_path),
                      _optional_path(args.dataset_dir), args.num_train_steps, args.num_workers,
                      seed=args.seed)
    print(f"exported model: {result.export_dir}")
    print("drawings: " + ", ".join(str(p) for p in result.drawings))
    print("wall time: " + ", ".join(f"{k} {v:.0f} s" for k, v in result.seconds.items()))
    print(f"AP@0.5 on the raccoon test split: {result.ap50:.4f}")
    return 0


def _optional_path(value: str | None) -> Path | None:
    return Path(value) if value else None
