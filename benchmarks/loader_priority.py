"""Training step time with the loader worker at normal vs idle CPU priority, in one run.

The question: on a CPU-only machine, should loader workers run in Linux's SCHED_IDLE class,
so that they only take CPU time the training step leaves free? One
``objdet.engine.training.train`` run of the main job's config on the CPU; a hook moves the
loader worker between the normal scheduling class and SCHED_IDLE every ``--block`` steps, so
both settings see the same drift of a shared machine, and compares their step times (the
first steps, while the workers and caches warm up, are left out). Linux only.

Blocks must be long against the loader's prefetch (2 batches per worker): an idle worker can
fall behind by those batches and catch up in the next normal block, moving its work there.
With 4-step blocks that showed idle 8% faster; with 10-step blocks the difference is gone
(RESULTS.md), so objdet leaves its workers at normal priority.

    python benchmarks/loader_priority.py [--steps 126] [--block 10] [--num_workers 1]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import append_results, describe_machine
from train_speed import CONFIG, RACCOON, load_config

from objdet.engine.trainer import Hook, Trainer
from objdet.engine.training import TrainOptions, train

WARMUP_STEPS = 6
POLICIES = {"normal": os.SCHED_OTHER, "idle": os.SCHED_IDLE}


class AlternatePriority(Hook):
    """Moves the loader workers between the policies every ``block`` steps; times each step."""

    def __init__(self, block: int) -> None:
        self.block = block
        self.policy = "normal"
        self.step_seconds: dict[str, list[float]] = {name: [] for name in POLICIES}
        self.last: float | None = None

    def after_step(self, trainer: Trainer, losses: dict[str, float]) -> None:
        now = time.perf_counter()
        if self.last is not None and trainer.step > WARMUP_STEPS:
            self.step_seconds[self.policy].append(now - self.last)
        if trainer.step % self.block == 0:
            self.policy = "idle" if (trainer.step // self.block) % 2 == 0 else "normal"
            workers = multiprocessing.active_children()
            if not workers:
                raise RuntimeError("no loader worker process found: run with --num_workers >= 1")
            for worker in workers:
                os.sched_setscheduler(worker.pid, POLICIES[self.policy], os.sched_param(0))
        self.last = time.perf_counter()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=126)
    parser.add_argument("--block", type=int, default=10, help="steps between priority switches")
    parser.add_argument("--num_workers", type=int, default=1)
    args = parser.parse_args()

    from objdet.demo import convert_raccoon

    machine = describe_machine()
    hook = AlternatePriority(args.block)
    with tempfile.TemporaryDirectory() as tmp:
        record = convert_raccoon(RACCOON, Path(tmp) / "data")["train"]
        options = TrainOptions(num_train_steps=args.steps, checkpoint_every_n=10_000, num_workers=args.num_workers,
                               device="cpu", show_progress=False, extra_hooks=[hook])
        train(load_config(record), Path(tmp) / "model", options)
    seconds = {name: statistics.mean(times) for name, times in hook.step_seconds.items()}
    rows = "\n".join(
        f"| {name} | {len(times)} | {statistics.mean(times):.3f} | {statistics.median(times):.3f} |"
        for name, times in hook.step_seconds.items()
    )
    gain = seconds["normal"] / seconds["idle"]
    print(rows)
    print(f"normal / idle step time = {gain:.3f}")
    append_results("loader_priority", f"""Machine: {machine}.
Model: {CONFIG.name} (batch 16) on the CPU, {args.num_workers} loader worker(s); one run of {args.steps} steps, the
worker's scheduling class switched every {args.block} steps (steps 1-{WARMUP_STEPS} not timed).
Command: `python benchmarks/loader_priority.py --steps {args.steps} --block {args.block} --num_workers {args.num_workers}`

| worker priority | steps | mean s/step | median s/step |
| --- | ---: | ---: | ---: |
{rows}

Step time normal / idle: **{gain:.3f}x** (above 1: idle workers make training faster).""")


if __name__ == "__main__":
    main()
