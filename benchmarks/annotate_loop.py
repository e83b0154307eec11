"""``objdet annotate`` with a simulated annotator on the raccoon dataset.

The annotator labels the raccoon train split through the real app (``objdet annotate`` as a
subprocess, its trainer process included) over HTTP: for each image it accepts the shown
suggestions (score >= --threshold) that match a ground-truth box at IoU >= 0.5, rejects the
others and draws the ground-truth boxes nothing matched. After each checkpoint (20, 40, 80,
160 answered images) it waits for a training round that covers every answer so far and
records the AP@0.5 on the raccoon test split (the trainer's --eval_input evaluation) and the
share of the final boxes drawn by hand. Conditions: ordering (uncertainty, random) x
retraining (all answers, last batch only: the Prodigy recipe's way) x seeds; plus the
reference: the same config trained on all the labelled train images at once for as many steps
as the loop's last round ended at. The latency of every POST /api/answer is recorded with the
trainer's state at the time (p50/p99 overall and while a round was training).

    python benchmarks/annotate_loop.py                       # the full benchmark (hours on a CPU)
    python benchmarks/annotate_loop.py --num_images 40 --checkpoints 20,40 --seeds 0 \\
        --orderings uncertainty,random --train_on all --steps_per_round 10 \\
        --override train_config.batch_size=4                 # a reduced run

Prints a table, appends it to benchmarks/RESULTS.md (with the machine and the command) and
writes a plot (PNG, drawn with Pillow) beside the outputs.
"""

from __future__ import annotations

import argparse
import csv
import http.client
import json
import os
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

AP_TARGET_GAP = 0.05
HAND_DRAWN_TARGET = 0.5
LATENCY_TARGET_MS = 100.0
TEST_IMAGES = 40  # the raccoon test split


@dataclass
class Data:
    images: Path          # the train images the annotator labels (symlinks)
    truth: dict[str, list[list[float]]]
    train_record: Path    # all train images with ground truth (the reference run)
    test_record: Path
    label_map: Path


@dataclass
class Condition:
    ordering: str
    train_on: str
    seed: int
    ap50: dict[int, float | None] = field(default_factory=dict)
    hand_drawn: dict[int, float] = field(default_factory=dict)
    latencies_ms: list[tuple[float, str]] = field(default_factory=list)  # (ms, trainer state)
    final_step: int = 0
    seconds: float = 0.0

    @property
    def name(self) -> str:
        return f"{self.ordering}/{self.train_on}"


# -- data ------------------------------------------------------------------------------------
def prepare_data(output: Path, num_images: int) -> Data:
    from objdet.demo import convert_raccoon
    from objdet.samples import raccoon_dataset_dir

    dataset = raccoon_dataset_dir()
    records = convert_raccoon(dataset, output / "data")
    truth: dict[str, list[list[float]]] = {}
    with open(dataset / "train_labels.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            truth.setdefault(row["filename"], []).append([float(row[k]) for k in ("xmin", "ymin", "xmax", "ymax")])
    names = sorted(truth)[:num_images]
    images = output / "train_images"
    images.mkdir(parents=True, exist_ok=True)
    for name in names:
        link = images / name
        if not link.exists():
            link.symlink_to(dataset / "images" / name)
    return Data(images, {name: truth[name] for name in names}, records["train"], records["test"],
                dataset / "object-detection.pbtxt")


def write_config(args: argparse.Namespace, output: Path) -> Path:
    import objdet.config

    config = objdet.config.load(args.pipeline_config_path, overrides=args.override)
    config.eval_config.num_examples = TEST_IMAGES  # AP@0.5 on the whole test split
    path = output / "pipeline.config"
    objdet.config.save(config, path)
    return path


# -- the simulated annotator -----------------------------------------------------------------
def iou(a: list[float], b: list[float]) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def simulated_answer(task: dict[str, Any], truth: list[list[float]], threshold: float,
                     ) -> tuple[list[dict[str, Any]], list[list[float]], int]:
    """(final boxes, rejected suggestions, boxes drawn by hand) for one task."""
    shown = sorted((b for b in task["boxes"] if b["score"] >= threshold), key=lambda b: -b["score"])
    unmatched = list(range(len(truth)))
    final, rejected = [], []
    for suggestion in shown:
        best = max(unmatched, key=lambda i: iou(suggestion["box_xyxy"], truth[i]), default=None)
        if best is not None and iou(suggestion["box_xyxy"], truth[best]) >= 0.5:
            unmatched.remove(best)
            final.append({"box_xyxy": suggestion["box_xyxy"], "label": suggestion["label"], "source": "suggested"})
        else:
            rejected.append(suggestion["box_xyxy"])
    for index in unmatched:
        final.append({"box_xyxy": truth[index], "label": "raccoon", "source": "drawn"})
    return final, rejected, len(unmatched)


class App:
    """``objdet annotate`` as a subprocess on a free port."""

    def __init__(self, command: list[str], log: Path) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}
        self._log = log.open("ab")
        self.process = subprocess.Popen([*command, "--port", str(self.port)], stdout=self._log,
                                        stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 120
        while True:
            try:
                if self.get("/api/status")[0] == 200:
                    return
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"objdet annotate did not start; see {log}")
            time.sleep(0.2)

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
        try:
            data = json.dumps(body).encode() if body is not None else None
            connection.request(method, path, body=data, headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            content = response.read()
        finally:
            connection.close()
        return response.status, (json.loads(content) if content else None)

    def get(self, path: str) -> tuple[int, Any]:
        return self.request("GET", path)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self._log.close()


def run_condition(args: argparse.Namespace, data: Data, config: Path, condition: Condition, output: Path) -> None:
    model_dir = output / f"{condition.ordering}-{condition.train_on}-seed{condition.seed}"
    command = [sys.executable, "-m", "objdet", "annotate", "--images", str(data.images),
               "--label_map_path", str(data.label_map), "--pipeline_config_path", str(config),
               "--model_dir", str(model_dir), "--eval_input", str(data.test_record),
               "--order", condition.ordering, "--train_on", condition.train_on, "--seed", str(condition.seed),
               "--retrain_every_n", str(args.batch), "--retrain_every_seconds", "2",
               "--steps_per_round", str(args.steps_per_round), "--min_score", str(min(args.threshold, 0.05))]
    model_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    app = App(command, model_dir / "app.log")
    trainer_state = ["idle"]
    done = threading.Event()

    def watch() -> None:  # the trainer's state, to tag each answer's latency
        while not done.wait(0.25):
            try:
                trainer_state[0] = app.get("/api/status")[1]["trainer"].get("state", "?")
            except (OSError, TypeError, KeyError):
                pass

    threading.Thread(target=watch, daemon=True).start()
    drawn = boxes = answered = last_answer_id = 0
    try:
        while answered < max(args.checkpoints):
            status, task = app.get(f"/api/next?session=sim-{condition.seed}")
            if status == 204:
                break
            final, rejected, hand = simulated_answer(task, data.truth[task["key"]], args.threshold)
            sent = time.perf_counter()
            status, reply = app.request("POST", "/api/answer", {
                "task_id": task["task_id"], "session": f"sim-{condition.seed}", "answer": "accept",
                "boxes": final, "rejected": rejected, "model_version": task["model_version"]})
            condition.latencies_ms.append(((time.perf_counter() - sent) * 1000, trainer_state[0]))
            if status != 200:
                raise RuntimeError(f"answer refused: {reply}")
            last_answer_id = reply["answer_id"]
            answered += 1
            drawn, boxes = drawn + hand, boxes + len(final)
            if answered in args.checkpoints:
                trainer = wait_for_round(app, last_answer_id)
                condition.ap50[answered] = trainer.get("ap50")
                condition.hand_drawn[answered] = drawn / max(boxes, 1)
                condition.final_step = int(trainer.get("step", 0))
                print(f"  {condition.name} seed {condition.seed}: {answered} answered, AP@0.5 "
                      f"{_fmt(condition.ap50[answered])}, drawn by hand {condition.hand_drawn[answered]:.0%}, "
                      f"model v{trainer.get('version')}", flush=True)
    finally:
        done.set()
        app.stop()
    condition.seconds = time.perf_counter() - start


def wait_for_round(app: App, answer_id: int) -> dict[str, Any]:
    """The trainer's status once a round that saw ``answer_id`` has finished."""
    while True:
        trainer = app.get("/api/status")[1]["trainer"]
        if trainer.get("state") == "idle" and int(trainer.get("last_answer_id", 0)) >= answer_id:
            while app.get("/api/status")[1]["model_version"] < int(trainer.get("version", 0)):
                time.sleep(0.2)  # the app loads the new version: the next suggestions come from it
            return trainer  # type: ignore[no-any-return]
        if trainer.get("state") == "error":
            raise RuntimeError(f"the trainer failed: {trainer.get('error')}")
        time.sleep(0.5)


# -- the reference: all labelled images at once ----------------------------------------------
def reference_ap(data: Data, config: Path, steps: int, seed: int, output: Path) -> float | None:
    import objdet.config
    from objdet.annotate.trainer import _ap50
    from objdet.data.formats import CsvReader, convert_to_tfrecord
    from objdet.engine.training import TrainOptions, train
    from objdet.samples import raccoon_dataset_dir
    from objdet.structures.label_map import load_label_map

    dataset = raccoon_dataset_dir()
    subset = output / "reference_train.csv"
    with open(dataset / "train_labels.csv", newline="") as source, open(subset, "w", newline="") as target:
        reader = csv.DictReader(source)
        writer = csv.DictWriter(target, reader.fieldnames or [])
        writer.writeheader()
        writer.writerows(row for row in reader if row["filename"] in data.truth)
    record = output / "reference_train.record"
    convert_to_tfrecord(CsvReader(subset, dataset / "images", load_label_map(data.label_map)), record)
    loaded = objdet.config.load(config, overrides=[
        f"train_input_reader.tf_record_input_reader.input_path=['{record}']",
        f"train_input_reader.label_map_path='{data.label_map}'",
        f"eval_input_reader[0].tf_record_input_reader.input_path=['{data.test_record}']",
        f"eval_input_reader[0].label_map_path='{data.label_map}'",
    ])
    result = train(loaded, output / f"reference-seed{seed}", TrainOptions(
        num_train_steps=max(steps, 1), num_workers=0, show_progress=False, seed=seed,
        checkpoint_every_n=max(steps, 1)))
    return _ap50(result.eval_history[-1][1]) if result.eval_history else None


# -- reporting -------------------------------------------------------------------------------
def _fmt(value: float | None, spec: str = ".3f") -> str:
    return "–" if value is None else format(value, spec)


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.fmean(present) if present else None


def _std(values: list[float | None]) -> float:
    present = [v for v in values if v is not None]
    return statistics.pstdev(present) if len(present) > 1 else 0.0


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def report(args: argparse.Namespace, conditions: list[Condition], references: dict[int, float | None]) -> str:
    names = list(dict.fromkeys(c.name for c in conditions))
    reference = _mean(list(references.values()))
    lines = ["| condition | seeds | " + " | ".join(f"AP@0.5 after {n}" for n in args.checkpoints)
             + " | drawn by hand (all) | answer p50 / p99 ms | p99 while training ms |",
             "| --- | ---: |" + " ---: |" * len(args.checkpoints) + " ---: | ---: | ---: |"]
    for name in names:
        group = [c for c in conditions if c.name == name]
        cells = [f"{_fmt(_mean([c.ap50.get(n) for c in group]))} ± {_std([c.ap50.get(n) for c in group]):.3f}"
                 for n in args.checkpoints]
        last = max(args.checkpoints)
        hand = _mean([c.hand_drawn.get(last) for c in group])
        every = [ms for c in group for ms, _ in c.latencies_ms]
        training = [ms for c in group for ms, state in c.latencies_ms if state == "training"]
        lines.append(f"| {name} | {len(group)} | " + " | ".join(cells)
                     + f" | {_fmt(hand, '.0%')} | {_fmt(percentile(every, 50), '.1f')} / {_fmt(percentile(every, 99), '.1f')}"
                     f" | {_fmt(percentile(training, 99), '.1f')} ({len(training)} answers) |")
    lines.append("")
    lines.append(f"Reference, all {max(args.checkpoints)} labelled images at once (same config, as many steps as "
                 f"the loop's last round): AP@0.5 {_fmt(reference)} (seeds {', '.join(map(str, references))}).")
    best_final = max((_mean([c.ap50.get(max(args.checkpoints)) for c in conditions if c.name == n]) or 0.0)
                     for n in names) if names else 0.0
    if reference is not None:
        lines.append(f"Targets: drawn by hand <= {HAND_DRAWN_TARGET:.0%}; final AP@0.5 within {AP_TARGET_GAP} of the "
                     f"reference (best condition: {best_final:.3f} vs {reference:.3f}); answer p99 <= "
                     f"{LATENCY_TARGET_MS:.0f} ms while training.")
    return "\n".join(lines)


def plot(args: argparse.Namespace, conditions: list[Condition], references: dict[int, float | None], path: Path) -> None:
    """AP@0.5 and the hand-drawn share against answered images, one line per condition."""
    from PIL import Image, ImageDraw

    width, height, margin = 900, 420, 60
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    colors = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189)]
    panels = [("AP@0.5 on the raccoon test split", lambda c, n: c.ap50.get(n)),
              ("share of boxes drawn by hand", lambda c, n: c.hand_drawn.get(n))]
    panel_width = (width - 3 * margin) // 2
    xs = args.checkpoints
    for p, (title, value) in enumerate(panels):
        left = margin + p * (panel_width + margin)
        top, bottom, right = margin, height - margin, left + panel_width
        draw.rectangle([left, top, right, bottom], outline="black")
        draw.text((left, top - 20), title, fill="black")
        for tick in (0.0, 0.5, 1.0):
            y = bottom - tick * (bottom - top)
            draw.text((left - 30, y - 6), f"{tick:.1f}", fill="black")
        for n in xs:
            x = left + (n - min(xs)) / max(max(xs) - min(xs), 1) * panel_width
            draw.text((x - 8, bottom + 6), str(n), fill="black")
        for index, name in enumerate(dict.fromkeys(c.name for c in conditions)):
            group = [c for c in conditions if c.name == name]
            points = []
            for n in xs:
                v = _mean([value(c, n) for c in group])
                if v is not None:
                    points.append((left + (n - min(xs)) / max(max(xs) - min(xs), 1) * panel_width,
                                   bottom - v * (bottom - top)))
            color = colors[index % len(colors)]
            if len(points) > 1:
                draw.line(points, fill=color, width=2)
            for x, y in points:
                draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=color)
            draw.text((left + 6, top + 6 + 14 * index), name, fill=color)
        reference = _mean(list(references.values()))
        if p == 0 and reference is not None:
            y = bottom - reference * (bottom - top)
            draw.line([(left, y), (right, y)], fill=(120, 120, 120), width=1)
            draw.text((right - 150, y - 14), "all labelled at once", fill=(120, 120, 120))
    draw.text((margin, height - 24), "answered images", fill="black")
    image.save(path)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipeline_config_path", default=None,
                        help="default: the main job's SSDLite config shipped in objdet.samples")
    parser.add_argument("--override", action="append", default=[], help="config override KEY=VALUE (repeatable)")
    parser.add_argument("--num_images", type=int, default=160)
    parser.add_argument("--checkpoints", default="20,40,80,160")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--orderings", default="uncertainty,random")
    parser.add_argument("--train_on", default="all,last_batch")
    parser.add_argument("--batch", type=int, default=10, help="new answers per training round")
    parser.add_argument("--steps_per_round", type=int, default=50)
    parser.add_argument("--threshold", type=float, default=0.5, help="suggestions the annotator sees")
    parser.add_argument("--output_dir", default="out/annotate_loop")
    parser.add_argument("--plot", default=str(Path(__file__).resolve().parent / "annotate_loop.png"),
                        help="where the PNG plot goes; default benchmarks/annotate_loop.png")
    parser.add_argument("--no_results", action="store_true", help="do not append to RESULTS.md")
    args = parser.parse_args(argv)
    args.checkpoints = sorted(int(v) for v in args.checkpoints.split(","))
    args.seeds = [int(v) for v in args.seeds.split(",")]
    args.orderings = args.orderings.split(",")
    args.train_on = args.train_on.split(",")
    if args.pipeline_config_path is None:
        from objdet.samples import main_job_config_path

        args.pipeline_config_path = str(main_job_config_path())
    return args


def main(argv: list[str] | None = None) -> int:
    from machine import append_results, describe_machine

    args = parse_args(argv)
    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    data = prepare_data(output, args.num_images)
    config = write_config(args, output)
    start = time.perf_counter()
    conditions = []
    for seed in args.seeds:
        for ordering in args.orderings:
            for train_on in args.train_on:
                condition = Condition(ordering, train_on, seed)
                run_condition(args, data, config, condition, output)
                conditions.append(condition)
    steps = max((c.final_step for c in conditions), default=0)
    references = {seed: reference_ap(data, config, steps, seed, output) for seed in args.seeds}
    table = report(args, conditions, references)
    figure = Path(args.plot)
    plot(args, conditions, references, figure)
    print(table)
    print(f"plot: {figure}")
    if not args.no_results:
        command = "python benchmarks/annotate_loop.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
        append_results("annotate_loop (simulated annotator, raccoon)", "\n".join([
            f"Machine: {describe_machine()}.  ",
            f"Command: `{command}` ({time.perf_counter() - start:.0f} s).  ",
            (f"Config: {args.pipeline_config_path} {' '.join(args.override)}; {args.num_images} train images, "
             f"a round every {args.batch} answers ({args.steps_per_round} steps), annotator threshold {args.threshold}.  "),
            f"Plot: {figure}", "", table]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
