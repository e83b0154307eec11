"""COCO box evaluation speed: ``objdet eval-coco`` vs faster-coco-eval vs pycocotools.

A synthetic COCO-sized workload (fixed seed): 5,000 images, 80 classes, ~7 ground-truth
objects (some crowds) and 100 detections per image, scores with ties. Each tool runs as a
separate process that loads both JSON files, evaluates, accumulates and summarizes; wall
time and peak RSS are measured per process. The 12 stats must be bit-identical.

    .venv/bin/python benchmarks/eval_speed.py [--images 5000] [--no-append]

Figures are appended to benchmarks/RESULTS.md with the machine description.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"

PYCOCOTOOLS = """
import json, sys, contextlib, io
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
with contextlib.redirect_stdout(io.StringIO()):
    gt = COCO(sys.argv[1]); dt = gt.loadRes(sys.argv[2])
    e = COCOeval(gt, dt, "bbox"); e.evaluate(); e.accumulate(); e.summarize()
print(json.dumps({"stats": [float(s) for s in e.stats]}))
"""
FASTER_COCO_EVAL = """
import json, sys, contextlib, io
from faster_coco_eval import COCO, COCOeval_faster
with contextlib.redirect_stdout(io.StringIO()):
    gt = COCO(sys.argv[1]); dt = gt.loadRes(sys.argv[2])
    e = COCOeval_faster(gt, dt, "bbox", print_function=lambda *a: None)
    e.evaluate(); e.accumulate(); e.summarize()
print(json.dumps({"stats": [float(s) for s in e.stats]}))
"""


def make_workload(directory: Path, num_images: int, seed: int = 0) -> tuple[Path, Path]:
    """Write gt.json / dt.json: ~7 objects and 100 detections per image."""
    rng = np.random.default_rng(seed)
    images, annotations, results = [], [], []
    for image_id in range(1, num_images + 1):
        width, height = int(rng.integers(320, 641)), int(rng.integers(240, 481))
        images.append({"id": image_id, "width": width, "height": height})
        num_gt = int(rng.poisson(7))
        sizes = rng.choice([16, 48, 160], num_gt) * rng.uniform(0.5, 1.5, (2, num_gt))
        xy = rng.uniform(0, 1, (2, num_gt)) * (np.array([[width], [height]]) - sizes)
        boxes = np.round(np.stack([xy[0], xy[1], sizes[0], sizes[1]], 1), 2)
        classes = rng.integers(1, 81, num_gt)
        for box, cls in zip(boxes.tolist(), classes.tolist()):
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": cls,
                "bbox": box, "area": round(box[2] * box[3] * 0.8, 2),
                "iscrowd": int(rng.random() < 0.03)})
        # ~3 detections near each object (some of another class), the rest random.
        near = rng.integers(0, max(num_gt, 1), 100) if num_gt else np.zeros(100, int)
        is_near = (np.arange(100) < 3 * num_gt) & (num_gt > 0)
        det = np.empty((100, 4))
        if num_gt:
            det[:] = boxes[near] + rng.normal(0, 0.1, (100, 4)) * boxes[near][:, [2, 3, 2, 3]]
        random_sizes = rng.uniform(8, 200, (100, 2))
        det[~is_near, 2:] = random_sizes[~is_near]
        det[~is_near, 0] = rng.uniform(0, width, 100)[~is_near]
        det[~is_near, 1] = rng.uniform(0, height, 100)[~is_near]
        det[:, 2:] = np.maximum(det[:, 2:], 1.0)
        det_classes = rng.integers(1, 81, 100)
        if num_gt:
            keep_class = is_near & (rng.random(100) < 0.85)
            det_classes[keep_class] = classes[near][keep_class]
        scores = np.round(rng.random(100), 3)  # 3 decimals: many ties across 500k scores
        for box, cls, score in zip(np.round(det, 2).tolist(), det_classes.tolist(),
                                   scores.tolist()):
            results.append({"image_id": image_id, "category_id": cls, "bbox": box,
                            "score": score})
    categories = [{"id": c, "name": f"class_{c}"} for c in range(1, 81)]
    gt_path, dt_path = directory / "gt.json", directory / "dt.json"
    gt_path.write_text(json.dumps({"images": images, "annotations": annotations,
                                   "categories": categories}))
    dt_path.write_text(json.dumps(results))
    return gt_path, dt_path


def run_with_rusage(command: list[str]) -> tuple[float, float, str]:
    """Run a command; (wall seconds, its own peak RSS in MiB, stdout)."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = subprocess.Popen(command, stdout=out, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if process.returncode != 0:
            raise SystemExit(f"{command[:3]} failed:\n{err.read().decode()[-2000:]}")
        return wall, usage.ru_maxrss / 1024, out.read().decode()


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    parts = [f"python {platform.python_version()}", f"numpy {np.__version__}"]
    for package in ("pycocotools", "faster-coco-eval", "orjson"):
        try:
            parts.append(f"{package} {version(package)}")
        except PackageNotFoundError:
            parts.append(f"{package} absent")
    return ", ".join(parts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--no-append", action="store_true", help="do not write RESULTS.md")
    args = parser.parse_args()
    python = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        gt_path, dt_path = make_workload(Path(tmp), args.images)
        commands = {
            "objdet eval-coco": [python, "-m", "objdet", "eval-coco", "--gt", str(gt_path),
                                 "--dt", str(dt_path)],
            "faster-coco-eval": [python, "-c", FASTER_COCO_EVAL, str(gt_path), str(dt_path)],
            "pycocotools": [python, "-c", PYCOCOTOOLS, str(gt_path), str(dt_path)],
        }
        figures = {}
        for name, command in commands.items():
            wall, peak, stdout = run_with_rusage(command)
            figures[name] = (wall, peak, json.loads(stdout)["stats"])
            print(f"{name:18s} {wall:7.2f} s  peak RSS {peak:7.0f} MiB", flush=True)
    reference = figures["pycocotools"][2]
    lines = []
    for name, (wall, peak, stats) in figures.items():
        same = "bit-identical" if stats == reference else f"DIFFERS: {stats} vs {reference}"
        lines.append(f"| {name} | {wall:.2f} | {peak:.0f} | "
                     f"{wall / figures['faster-coco-eval'][0]:.2f}x | "
                     f"{wall / figures['pycocotools'][0]:.2f}x | {same} |")
    print("\n".join(lines))
    print("stats:", reference)
    if not args.no_append:
        section = [
            "", f"## COCO bbox evaluation speed ({datetime.date.today().isoformat()})", "",
            (f"{args.images} images, 80 classes, ~7 GT (3% crowd) and 100 detections per image "
             f"(`benchmarks/eval_speed.py`, seed 0). Whole process each: JSON loading "
             "included."),
            f"Machine: {machine()}; {versions()}. Shared, loaded CPU: compare ratios.", "",
            ("| tool | wall s | peak RSS MiB | vs faster-coco-eval | vs pycocotools | "
             "12 stats vs pycocotools |"),
            "| --- | --- | --- | --- | --- | --- |", *lines, "",
        ]
        with RESULTS.open("a") as handle:
            handle.write("\n".join(section))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
