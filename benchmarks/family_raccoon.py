"""Faster R-CNN and CenterNet trained from scratch on raccoon in the main job's CPU budget.

Issue 12's last point: a Faster R-CNN and a CenterNet config (``configs/``) trained from
scratch on the 160 raccoon training images with the CPU seconds the main job (SSDLite,
``objdet demo``) spends, evaluated on the 40 test images (``pascal_voc_detection_metrics``
and ``coco_detection_metrics``), beside the main job's figures.

For each config, one after the other: the records ``objdet demo`` writes
(``objdet.demo.convert_raccoon``), ``objdet.engine.training.train`` (``--seed``, no loader
workers so that every CPU second of the run is this process's), the trainer's final
evaluation; CPU seconds are user + sys of the process (``resource.getrusage``) over training
and evaluation, as ``time`` counts the main job's.

    nice -n 19 .venv/bin/python benchmarks/family_raccoon.py            # the configs' steps
    nice -n 19 .venv/bin/python benchmarks/family_raccoon.py --num_train_steps 4 --no_append
                                                         # s/step, to size num_steps

Prints a table and appends it to benchmarks/RESULTS.md with the machine and the command.
"""

from __future__ import annotations

import argparse
import math
import resource
import shlex
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from machine import append_results, describe_machine

from objdet.demo import AP50, convert_raccoon, load_raccoon_config
from objdet.engine.trainer import Hook, Trainer
from objdet.engine.training import TrainOptions, train
from objdet.samples import raccoon_dataset_dir

REPOSITORY = Path(__file__).resolve().parents[1]
CONFIGS = (
    REPOSITORY / "configs" / "faster_rcnn_resnet50_fpn_raccoon.config",
    REPOSITORY / "configs" / "center_net_hourglass10_raccoon.config",
)
AP75 = "DetectionBoxes_Precision/mAP@.75IOU"
COCO_MAP = "DetectionBoxes_Precision/mAP"
# The SSD main job's latest figures (RESULTS.md, "main job (`make demo`), three seeds, after the
# OD API parity changes", 2026-12-07; 2 threads, quiet machine but seed 0): seed, AP@0.5,
# train+eval wall s, user s of the whole `objdet demo` (conversion, export and drawing included).
MAIN_JOB = ((0, 0.806, 566, 1000), (1, 0.764, 451, 858), (2, 0.812, 492, 957))
MAIN_JOB_STEPS = 440


@dataclass
class LossLog(Hook):
    """The total loss of every step, to check that it falls."""

    losses: list[float] = field(default_factory=list)

    def after_step(self, trainer: Trainer, losses: dict[str, float]) -> None:
        self.losses.append(losses["Loss/total_loss"])


@dataclass
class RunResult:
    config: Path
    steps: int
    batch_size: int
    metrics: dict[str, float]
    wall_seconds: float
    cpu_seconds: float
    losses: list[float]

    def loss_summary(self) -> str:
        """Mean total loss over the first and the last tenth of the steps."""
        tenth = max(1, len(self.losses) // 10)
        first, last = self.losses[:tenth], self.losses[-tenth:]
        return f"{sum(first) / len(first):.3f} -> {sum(last) / len(last):.3f}"


def cpu_seconds() -> float:
    """User + sys CPU seconds of this process and its waited-for children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def train_and_evaluate(config_path: Path, records: dict[str, Path], dataset_dir: Path,
                       model_dir: Path, seed: int, num_train_steps: int | None) -> RunResult:
    """Train ``config_path`` from scratch into ``model_dir`` and evaluate it at the end."""
    config = load_raccoon_config(config_path, records, dataset_dir)
    shutil.rmtree(model_dir, ignore_errors=True)
    loss_log = LossLog()
    options = TrainOptions(num_train_steps=num_train_steps, num_workers=0, seed=seed,
                           checkpoint_every_n=0, show_progress=False, extra_hooks=(loss_log,))
    cpu_start, wall_start = cpu_seconds(), time.perf_counter()
    result = train(config, model_dir, options, config_source=config_path)
    wall, cpu = time.perf_counter() - wall_start, cpu_seconds() - cpu_start
    if not result.eval_history:
        raise RuntimeError(f"{config_path}: training ran no evaluation (no eval_input_reader?)")
    return RunResult(config_path, result.step, config.train_config.batch_size,
                     result.eval_history[-1][1], wall, cpu, loss_log.losses)


def display_path(path: Path) -> str:
    """``path`` relative to the repository when it lies inside it."""
    return str(path.relative_to(REPOSITORY)) if path.is_relative_to(REPOSITORY) else str(path)


def format_table(results: list[RunResult]) -> str:
    lines = [
        ("| model | config | steps x batch | AP@0.5 | AP@0.75 | COCO mAP | train+eval wall s "
         "| CPU s (user+sys) | CPU s / step | total loss, first -> last tenth |"),
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for run in results:
        metrics = run.metrics
        lines.append(
            f"| {run.config.stem.split('_raccoon')[0]} | `{display_path(run.config)}` "
            f"| {run.steps} x {run.batch_size} | {metrics[AP50]:.3f} | {metrics[AP75]:.3f} "
            f"| {metrics[COCO_MAP]:.3f} | {run.wall_seconds:.0f} | {run.cpu_seconds:.0f} "
            f"| {run.cpu_seconds / max(run.steps, 1):.2f} | {run.loss_summary()} |")
    for seed, ap50, wall, user in MAIN_JOB:
        lines.append(f"| SSD main job, seed {seed} (quoted) | `configs/ssdlite_mobilenet_v3_large_"
                     f"raccoon.config` | {MAIN_JOB_STEPS} x 16 | {ap50:.3f} | - | - | {wall} "
                     f"| {user} (user, whole demo) | {user / MAIN_JOB_STEPS:.2f} | - |")
    return "\n".join(lines)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", type=Path, nargs="+", default=list(CONFIGS))
    parser.add_argument("--output_dir", type=Path, default=REPOSITORY / "out" / "family_raccoon")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num_train_steps", type=int, default=None,
                        help="override every config's num_steps (its LR schedule stays)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--no_append", action="store_true", help="do not append to RESULTS.md")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    machine = describe_machine()
    dataset_dir = raccoon_dataset_dir()
    records = convert_raccoon(dataset_dir, args.output_dir / "data")
    results = []
    for config_path in args.configs:
        run = train_and_evaluate(config_path.resolve(), records, dataset_dir,
                                 args.output_dir / config_path.stem, args.seed,
                                 args.num_train_steps)
        print(f"{config_path.name}: {run.steps} steps, AP@0.5 {run.metrics[AP50]:.3f}, "
              f"CPU {run.cpu_seconds:.0f} s, wall {run.wall_seconds:.0f} s, "
              f"loss {run.loss_summary()}", flush=True)
        if not all(math.isfinite(loss) for loss in run.losses):
            print(f"{config_path.name}: the loss is not finite", file=sys.stderr)
        results.append(run)
    table = format_table(results)
    print(table)
    if not args.no_append:
        command = "nice -n 19 .venv/bin/python benchmarks/family_raccoon.py " + shlex.join(argv)
        append_results(
            "family_raccoon: Faster R-CNN and CenterNet from scratch on raccoon (issue 12)",
            f"Machine: {machine}; {torch.get_num_threads()} intra-op threads.\n"
            f"Command: `{command.strip()}` (seed {args.seed}).\n\n{table}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
