"""Batch inference speed on the CPU: eager model vs exported program vs ONNX Runtime.

    .venv/bin/python benchmarks/infer_speed.py CONFIG... [--threads 2] [--batches 1 8] \\
        [--image_size 480 640] [--seconds 10] [--no-append]

Per config and batch size B, images per second of:

* eager: ``build_model(config.model).eval()`` called on B images at once
  (``torch.inference_mode``; resize, network, decoding, NMS);
* program: the export's ``model.pt2`` as ``objdet detect`` runs it
  (``Predictor.predict_pixels``, one image per call: the program has a batch of 1);
* ONNX Runtime: the export's ``model.onnx`` on ``uint8 [B, H, W, 3]`` in one call
  (``OnnxPredictor.predict_batch``: resize, network, decoding and NMS in the graph).

Inputs are B random ``uint8`` images of ``--image_size`` (resized by each model as its
config says). Weights are random (seeded): every anchor passes the configs' score thresholds,
so NMS runs at its maximum load in all three. The three are interleaved, one timed call of each
in turn, until each has run ``--seconds``; the figure is images / median seconds per call.
Threads: ``torch.set_num_threads`` and ONNX Runtime's intra-op pool alike. Appends a
markdown table to benchmarks/RESULTS.md with the machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from machine import append_results, describe_machine
from model_speed import export_model

WARMUP = 2


def measure(config_path: Path, args: argparse.Namespace, workdir: Path) -> list[dict[str, Any]]:
    """One row per batch size: images/s of each runtime and ONNX Runtime's ratio to eager."""
    from objdet import config as cfg
    from objdet.inference.predictor import OnnxPredictor, Predictor
    from objdet.models import build_model

    config = cfg.load(config_path)
    torch.manual_seed(0)
    model = build_model(config.model).eval()
    directory = export_model(model, config, workdir / config_path.stem)
    program = Predictor.from_export(directory)
    onnx = Predictor.from_export(directory, runtime="onnxruntime")
    assert isinstance(onnx, OnnxPredictor)
    height, width = args.image_size
    rows = []
    for batch in args.batches:
        pixels = np.random.RandomState(batch).randint(0, 256, (batch, height, width, 3)).astype(np.uint8)
        tensors = [torch.from_numpy(image).permute(2, 0, 1).contiguous() for image in pixels]

        def eager(tensors: list[torch.Tensor] = tensors) -> Any:
            with torch.inference_mode():
                return model([image.float() / 255.0 for image in tensors])  # type: ignore[operator]

        def exported(tensors: list[torch.Tensor] = tensors) -> Any:
            return [program.predict_pixels(image) for image in tensors]

        def onnx_runtime(pixels: np.ndarray = pixels) -> Any:
            return onnx.predict_batch(pixels)

        runs = {"eager": eager, "program": exported, "onnxruntime": onnx_runtime}
        seconds = _interleaved_median_seconds(runs, args.seconds)
        row: dict[str, Any] = {"config": config_path.stem, "batch": batch,
                               "image_size": f"{height}x{width}", "threads": args.threads}
        row.update({f"{name}_images_per_s": round(batch / value, 2) for name, value in seconds.items()})
        row["onnxruntime_vs_eager"] = round(seconds["eager"] / seconds["onnxruntime"], 2)
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def _interleaved_median_seconds(runs: dict[str, Callable[[], Any]], budget: float) -> dict[str, float]:
    for run in runs.values():
        for _ in range(WARMUP):
            run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    while min(sum(values) for values in times.values()) < budget or min(map(len, times.values())) < 3:
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def markdown_table(rows: list[dict[str, Any]]) -> str:
    header = ("| config | batch | eager images/s | program (pt2) images/s | ONNX Runtime images/s | "
              "ONNX Runtime / eager |")
    lines = [header, "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['config']} | failed: {row['error'][:120]} |")
            continue
        lines.append(f"| {row['config']} | {row['batch']} | {row['eager_images_per_s']:.2f} | "
                     f"{row['program_images_per_s']:.2f} | {row['onnxruntime_images_per_s']:.2f} | "
                     f"{row['onnxruntime_vs_eager']:.2f}x |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configs", nargs="+", type=Path, metavar="CONFIG")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--image_size", type=int, nargs=2, default=[480, 640], metavar=("H", "W"))
    parser.add_argument("--seconds", type=float, default=10.0, help="timed seconds per runtime")
    parser.add_argument("--no-append", action="store_true", help="do not append to RESULTS.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    machine = describe_machine()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="infer_speed_") as workdir:
        for config_path in args.configs:
            try:
                rows += measure(config_path, args, Path(workdir))
            except Exception as error:  # noqa: BLE001 - a benchmark row reports what failed
                rows.append({"config": config_path.stem, "error": f"{type(error).__name__}: {error}"})
                print(json.dumps(rows[-1]), flush=True)
    table = markdown_table(rows)
    print(table)
    if not args.no_append:
        append_results("infer_speed", f"""Machine: {machine}.
{args.threads} threads (torch and ONNX Runtime alike); {args.image_size[0]}x{args.image_size[1]} random
uint8 images, random weights (NMS at its maximum load); images/s from the median call, the
three runtimes interleaved for {args.seconds:.0f} s each.

    {' '.join(['.venv/bin/python', 'benchmarks/infer_speed.py', *sys.argv[1:]])}

{table}
""")


if __name__ == "__main__":
    main()
