"""Training throughput: ``objdet train`` (trainer + TFRecord input pipeline) vs a minimal loop.

Both train the same model (the main job's config, configs/ssdlite_mobilenet_v3_large_raccoon)
with the same optimizer on the raccoon training images:

- objdet: ``objdet.engine.training.train`` reading TFRecords through its DataLoader
  (decode, the config's augmentation, resize in the worker), with checkpoints and the EMA
  as configured;
- minimal: a bare PyTorch loop over images decoded once in memory (no augmentation);
- minimal, freed memory retained: the same after ``objdet.engine.host_memory.
  retain_freed_memory()``, which ``objdet train`` applies on the CPU: objdet against this row
  is the cost of its input pipeline and trainer alone.

Each runs in its own process (clean peak RSS, workers included). Images/s are measured over
the steps after a warm-up. The loops run one after the other, ``--repeats`` rounds of them:
a shared machine's speed drifts over minutes, so each round's ratio compares neighbours and
the figure is each loop's mean images/s over the rounds. The target is objdet >= 0.9x the
minimal loop.

    python benchmarks/train_speed.py [--steps 30] [--warmup 5] [--num_workers 1] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "ssdlite_mobilenet_v3_large_raccoon.config"
RACCOON = REPO / "datasets" / "raccoon"
TUNED_MINIMAL = "minimal, freed memory retained"
MODES = ["minimal", "objdet", TUNED_MINIMAL]


def peak_rss_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return (own + children) / 1024


def load_config(record: Path):  # type: ignore[no-untyped-def]
    import objdet.config

    config = objdet.config.load(CONFIG, overrides=[
        f"train_input_reader.tf_record_input_reader.input_path=['{record}']",
        f"train_input_reader.label_map_path='{RACCOON / 'object-detection.pbtxt'}'",
    ])
    del config.eval_input_reader[:]  # throughput only
    return config


def run_objdet(record: Path, steps: int, warmup: int, num_workers: int, work_dir: Path) -> dict[str, float]:
    from objdet.engine.trainer import Hook, Trainer
    from objdet.engine.training import TrainOptions, train

    class StepTimer(Hook):
        def __init__(self) -> None:
            self.started = 0.0
            self.finished = 0.0

        def after_step(self, trainer: Trainer, losses: dict[str, float]) -> None:
            if trainer.step == warmup:
                self.started = time.perf_counter()
            if trainer.step == warmup + steps:
                self.finished = time.perf_counter()

    timer = StepTimer()
    config = load_config(record)
    options = TrainOptions(num_train_steps=warmup + steps, checkpoint_every_n=10_000, num_workers=num_workers,
                           show_progress=False, extra_hooks=[timer])
    train(config, work_dir, options)
    seconds = timer.finished - timer.started
    return {"images_per_second": steps * config.train_config.batch_size / seconds, "seconds": seconds}


def run_minimal(record: Path, steps: int, warmup: int, retain_memory: bool) -> dict[str, float]:
    import torch

    from objdet.engine.host_memory import retain_freed_memory

    if retain_memory:
        retain_freed_memory()

    from objdet.data.example import decode_example
    from objdet.data.tfrecord import read_records
    from objdet.engine.optim import build_optimizer
    from objdet.models import build_model, parameter_groups
    from objdet.structures.label_map import load_label_map

    config = load_config(record)
    label_map = load_label_map(RACCOON / "object-detection.pbtxt")
    samples = [decode_example(r, label_map) for r in read_records(str(record))]
    images = [s.image.float() / 255.0 for s in samples]  # decoded once, kept in memory
    targets = [{"boxes": s.boxes, "labels": s.labels} for s in samples]
    torch.manual_seed(0)
    model = build_model(config.model)
    setup = build_optimizer(config.train_config.optimizer, parameter_groups(model))
    model.train()
    batch_size = config.train_config.batch_size
    order = torch.randperm(len(images))
    for step in range(warmup + steps):
        if step == warmup:
            started = time.perf_counter()
        chosen = [int(order[(step * batch_size + i) % len(images)]) for i in range(batch_size)]
        losses = model([images[i] for i in chosen], [targets[i] for i in chosen])
        total = sum(losses.values())
        setup.optimizer.zero_grad()
        total.backward()
        setup.optimizer.step()
        setup.scheduler.step()
    seconds = time.perf_counter() - started
    return {"images_per_second": steps * batch_size / seconds, "seconds": seconds}


def child(args: argparse.Namespace) -> None:
    record, work_dir = Path(args.record), Path(args.work_dir)
    if args.mode == "objdet":
        result = run_objdet(record, args.steps, args.warmup, args.num_workers, work_dir)
    else:
        result = run_minimal(record, args.steps, args.warmup, retain_memory=args.mode == TUNED_MINIMAL)
    result["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--num_workers", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2, help="rounds of the loops, one after the other")
    parser.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--record", help=argparse.SUPPRESS)
    parser.add_argument("--work_dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode:
        child(args)
        return

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from machine import append_results, describe_machine

    machine = describe_machine()
    runs: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory() as tmp:
        from objdet.demo import convert_raccoon

        record = convert_raccoon(RACCOON, Path(tmp) / "data")["train"]
        for round_number in range(args.repeats):
            for index, mode in enumerate(MODES):
                command = [sys.executable, __file__, "--mode", mode, "--record", str(record),
                           "--work_dir", str(Path(tmp) / f"model-{round_number}-{index}"),
                           "--steps", str(args.steps), "--warmup", str(args.warmup),
                           "--num_workers", str(args.num_workers)]
                output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
                runs[mode].append(json.loads(output.strip().splitlines()[-1]))
                print(f"round {round_number + 1}", mode, runs[mode][-1], flush=True)

    def speed(mode: str) -> float:
        return statistics.mean(run["images_per_second"] for run in runs[mode])

    rows = []
    for mode in MODES:
        per_round = ", ".join(f"{run['images_per_second']:.2f}" for run in runs[mode])
        versus = "" if mode == "minimal" else f"{speed(mode) / speed('minimal'):.2f}x"
        peak = max(run["peak_rss_mb"] for run in runs[mode])
        rows.append(f"| {mode} | {speed(mode):.2f} | {per_round} | {versus} | {peak:.0f} |")
    round_ratios = ", ".join(
        f"{o['images_per_second'] / m['images_per_second']:.2f}" for o, m in zip(runs["objdet"], runs["minimal"])
    )
    ratio = speed("objdet") / speed("minimal")
    same_allocator = speed("objdet") / speed(TUNED_MINIMAL)
    print(f"objdet / minimal = {ratio:.2f}x (rounds: {round_ratios}; target >= 0.9x); "
          f"objdet / {TUNED_MINIMAL} = {same_allocator:.2f}x")
    command = (f"python benchmarks/train_speed.py --steps {args.steps} --warmup {args.warmup} "
               f"--num_workers {args.num_workers} --repeats {args.repeats}")
    table = "\n".join(rows)
    append_results("train_speed", f"""Machine: {machine}.
Model: {CONFIG.name} (batch 16); {args.repeats} rounds of the loops, each {args.steps} timed steps
after {args.warmup} warm-up steps; objdet with {args.num_workers} loader worker(s), augmentation as
configured; minimal loop over pre-decoded images.
Command: `{command}`

| loop | images/s (mean) | per round | vs minimal | peak RSS (MB, workers included) |
| --- | ---: | ---: | ---: | ---: |
{table}

objdet / minimal: **{ratio:.2f}x** (rounds: {round_ratios}; target >= 0.9x). Against the minimal loop
with the allocator setting objdet applies: {same_allocator:.2f}x.""")


if __name__ == "__main__":
    main()
