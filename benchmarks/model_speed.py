"""Detector inference speed on the CPU: objdet eager vs objdet exported vs the OD API (TF2).

    .venv/bin/python benchmarks/model_speed.py CONFIG... \\
        [--reference_python /tmp/odapi-ref/bin/python] [--threads 2] [--repeats 20] [--no-append]

Per config, at the config's resolution (fixed_shape_resizer, or keep_aspect_ratio_resizer's
max_dimension square), batch 1, one random ``uint8`` image (numpy RandomState(0), the same
pixels for all of them), the median milliseconds per image after warm-up of:

* eager: ``build_model(config.model).eval()`` called on the image under
  ``torch.inference_mode`` (resize, network, box decoding and NMS); "of which network":
  ``model.predict`` alone on the canvas (feature extractor, box predictor, anchors);
* exported: the same weights written as a checkpoint, exported by
  ``objdet.export.export_inference_graph`` and run as ``objdet detect`` runs it
  (``Predictor.from_export(...).predict_pixels``: resize, ``model.pt2``, decoding, NMS);
* ONNX Runtime: the same export's ``model.onnx`` (resize, network, decoding and NMS in one
  graph) run by ONNX Runtime's CPU provider with ``--threads`` intra-op threads
  (``Predictor.from_export(..., runtime="onnxruntime")``);
* OD API: the TF2 model built by the OD API in the reference environment, preprocess +
  predict + postprocess in one ``tf.function`` (benchmarks/odapi_reference/speed_reference.py).

Both frameworks get ``--threads`` threads (``torch.set_num_threads``; TF's intra- and
inter-op pools) on the same machine in the same run; their timings are interleaved in
``--rounds`` rounds so that a change of load on the machine hits all alike. Weights are
random (no zoo checkpoint is at hand): with every anchor above the configs' score threshold,
NMS works on its maximum load in both frameworks. Also reported: parameters (objdet's
``model.parameters()``, the OD API's trainable variables) and GFLOPs of the network at the
config's resolution (``torch.utils.flop_counter.FlopCounterMode``: 2 x multiply-adds of
convolutions and matrix products). One JSON line per config, then a markdown table, which is
appended to benchmarks/RESULTS.md with the machine.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from machine import append_results, describe_machine

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "odapi_reference"))
from person_keypoints import PERSON_KEYPOINTS_LABEL_MAP, PLACEHOLDER

SPEED_REFERENCE = HERE / "odapi_reference" / "speed_reference.py"
WARMUP = 3


def config_resolution(config: Any) -> tuple[int, int]:
    """(height, width) the config's image_resizer gives a square image."""
    from objdet.errors import ConfigError

    model = getattr(config.model, config.model.WhichOneof("model"))
    resizer = model.image_resizer
    kind = resizer.WhichOneof("image_resizer_oneof")
    if kind == "fixed_shape_resizer":
        return resizer.fixed_shape_resizer.height, resizer.fixed_shape_resizer.width
    if kind == "keep_aspect_ratio_resizer":
        side = resizer.keep_aspect_ratio_resizer.max_dimension
        return side, side
    raise ConfigError(f"image_resizer: {kind} has no fixed resolution to benchmark at")


def runnable_config(config_path: Path, workdir: Path) -> Path:
    """``config_path``, or (a TF2 keypoint config) a copy in ``workdir`` whose placeholder
    ``keypoint_label_map_path`` names the OD API's person keypoints label map, written there:
    both frameworks build the keypoint heads from it."""
    text = config_path.read_text()
    pattern = re.compile(r'(keypoint_label_map_path:\s*)"' + PLACEHOLDER + r'[^"]*"')
    if not pattern.search(text):
        return config_path
    label_map = workdir / "person_keypoints_label_map.pbtxt"
    label_map.write_text(PERSON_KEYPOINTS_LABEL_MAP)
    copy = workdir / config_path.name
    copy.write_text(pattern.sub(lambda match: f'{match.group(1)}"{label_map}"', text))
    return copy


def random_pixels(height: int, width: int, seed: int = 0) -> torch.Tensor:
    """``uint8 [3, H, W]``: the pixels speed_reference.py feeds TF as ``[1, H, W, 3]``."""
    pixels = np.random.RandomState(seed).randint(0, 256, (1, height, width, 3)).astype(np.uint8)
    return torch.from_numpy(pixels[0]).permute(2, 0, 1).contiguous()


def network_gflops(model: torch.nn.Module, height: int, width: int) -> float:
    """GFLOPs (2 x multiply-adds) of ``model.predict`` on a ``[1, 3, H, W]`` canvas."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model.predict(torch.zeros(1, 3, height, width))  # type: ignore[operator]
    return counter.get_total_flops() / 1e9


def export_model(model: torch.nn.Module, config: Any, directory: Path) -> Path:
    """``model``'s weights as a checkpoint, exported as ``objdet export`` does; the export
    directory. Input paths and label maps of ``config`` are dropped: only the model is used."""
    from objdet import config as cfg
    from objdet.engine.checkpoint import CheckpointManager
    from objdet.export import export_inference_graph

    config = type(config).FromString(config.SerializeToString())
    config.ClearField("train_input_reader")
    config.ClearField("eval_input_reader")
    config.train_config.ClearField("fine_tune_checkpoint")
    cfg.save(config, directory / "pipeline.config")
    CheckpointManager(directory / "model").save(0, {"model": model.state_dict(), "ema": None})
    export_inference_graph(pipeline_config_path=directory / "pipeline.config",
                           trained_checkpoint_dir=directory / "model",
                           output_directory=directory / "exported")
    return directory / "exported"


def timed_ms(function: Callable[[], Any], count: int) -> list[float]:
    times = []
    for _ in range(count):
        start = time.perf_counter()
        function()
        times.append((time.perf_counter() - start) * 1000.0)
    return times


class ReferenceProcess:
    """speed_reference.py in the reference environment, timing on request (its protocol)."""

    def __init__(self, python: str, config: Path, threads: int, log: Path) -> None:
        self.log = log.open("w")
        self.process = subprocess.Popen(
            [python, str(SPEED_REFERENCE), str(config), "--threads", str(threads)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True,
        )
        self.ready = self._read()

    def _read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            self.close()
            raise RuntimeError(f"speed_reference.py failed; see {self.log.name}")
        return json.loads(line)  # type: ignore[no-any-return]

    def time(self, count: int) -> list[float]:
        assert self.process.stdin is not None
        self.process.stdin.write(f"{count}\n")
        self.process.stdin.flush()
        return list(self._read()["ms"])

    def close(self) -> None:
        if self.process.stdin is not None and not self.process.stdin.closed:
            self.process.stdin.close()
        self.process.wait(timeout=60)
        self.log.close()


def measure(config_path: Path, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """One config's row: sizes and the median timings (None where a stage failed)."""
    from objdet import config as cfg
    from objdet.inference.predictor import Predictor
    from objdet.models import build_model

    config = cfg.load(config_path)
    height, width = config_resolution(config)
    torch.manual_seed(0)
    model = build_model(config.model).eval()
    pixels = random_pixels(height, width)
    row: dict[str, Any] = {
        "config": config_path.stem, "resolution": f"{height}x{width}",
        "params": sum(p.numel() for p in model.parameters()),
        "gflops": round(network_gflops(model, height, width), 3),
        "threads": args.threads, "repeats": args.repeats,
    }
    runs: dict[str, Callable[[int], list[float]]] = {}

    def eager() -> Any:
        with torch.inference_mode():
            return model([pixels.float() / 255.0])  # type: ignore[operator]

    canvas = torch.rand(1, 3, height, width)

    def network() -> Any:
        with torch.inference_mode():
            return model.predict(canvas)  # type: ignore[operator]

    runs["eager_ms"] = lambda count: timed_ms(eager, count)
    runs["eager_network_ms"] = lambda count: timed_ms(network, count)
    try:
        predictor = Predictor.from_export(export_model(model, config, workdir / config_path.stem))
        row["export_max_box_difference"] = _max_difference(eager()[0]["boxes"],
                                                           predictor.predict_pixels(pixels).boxes)
        runs["exported_ms"] = lambda count: timed_ms(lambda: predictor.predict_pixels(pixels), count)
        onnx = Predictor.from_export(workdir / config_path.stem / "exported", runtime="onnxruntime")
        # scores, not boxes: random weights tie many scores, and tied boxes may be kept
        # in another order (or another of the tied boxes survives NMS)
        row["onnx_max_score_difference"] = _max_difference(eager()[0]["scores"][:, None],
                                                           onnx.predict_pixels(pixels).scores[:, None])
        runs["onnx_ms"] = lambda count: timed_ms(lambda: onnx.predict_pixels(pixels), count)
    except Exception as error:  # noqa: BLE001 - a benchmark row reports what failed
        row["exported_error"] = f"{type(error).__name__}: {error}"
    reference = None
    if args.reference_python:
        try:
            reference = ReferenceProcess(args.reference_python, config_path, args.threads,
                                         workdir / f"{config_path.stem}.tf.log")
            row["tf_params"], row["tf_version"] = reference.ready["params"], reference.ready["tf_version"]
            runs["odapi_tf_ms"] = reference.time
        except Exception as error:  # noqa: BLE001
            row["odapi_tf_error"] = f"{type(error).__name__}: {error}"
    try:
        row.update(_interleaved_medians(runs, args.repeats, args.rounds))
    finally:
        if reference is not None:
            reference.close()
    row["load_average"] = round(os.getloadavg()[0], 1)  # the last minute's, on this machine
    return row


def _max_difference(eager: torch.Tensor, exported: np.ndarray) -> float | None:
    """Max |difference| between an eager and an exported detection list's values (boxes in
    pixels, or scores); None when their counts differ: an export must detect what the eager
    model does."""
    values = eager.double().numpy()
    if values.shape != exported.shape:
        return None
    return float(np.abs(values - exported).max()) if values.size else 0.0


def _interleaved_medians(runs: dict[str, Callable[[int], list[float]]], repeats: int,
                         rounds: int) -> dict[str, float]:
    """Warm each up, then ``rounds`` rounds of ``repeats / rounds`` timings of each in turn;
    the median of each one's ``repeats`` timings, in milliseconds."""
    for run in runs.values():
        run(WARMUP)
    times: dict[str, list[float]] = {name: [] for name in runs}
    per_round = math.ceil(repeats / rounds)
    while min(len(t) for t in times.values()) < repeats:
        for name, run in runs.items():
            times[name] += run(min(per_round, repeats - len(times[name])))
    return {name: round(statistics.median(values), 2) for name, values in times.items()}


def markdown_table(rows: list[dict[str, Any]]) -> str:
    def cell(row: dict[str, Any], key: str) -> str:
        if key in row:
            return f"{row[key]:.1f}"
        error = row.get(key.replace("_ms", "_error"))
        return f"failed ({error.split(':')[0]})" if error else "-"

    def ratio(row: dict[str, Any]) -> str:
        if "onnx_ms" in row and "odapi_tf_ms" in row:
            return f"{row['odapi_tf_ms'] / row['onnx_ms']:.2f}x"
        return "-"

    header = ("| config | input | params objdet / OD API | GFLOPs | objdet eager ms | "
              "of which network ms | objdet exported (pt2) ms | objdet ONNX Runtime ms | "
              "OD API TF ms | ONNX Runtime speed / TF's | load |")
    lines = [header, "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['config']} | failed: {row['error'][:120]} |")
            continue
        params = f"{row['params'] / 1e6:.2f} M / " + (
            f"{row['tf_params'] / 1e6:.2f} M" if "tf_params" in row else "-")
        lines.append(f"| {row['config']} | {row['resolution']} | {params} | {row['gflops']:.2f} | "
                     f"{cell(row, 'eager_ms')} | {cell(row, 'eager_network_ms')} | {cell(row, 'exported_ms')} | "
                     f"{cell(row, 'onnx_ms')} | {cell(row, 'odapi_tf_ms')} | {ratio(row)} | "
                     f"{row['load_average']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configs", nargs="+", type=Path, metavar="CONFIG")
    parser.add_argument("--reference_python", default=None,
                        help="the OD API reference env's python (e.g. /tmp/odapi-ref/bin/python)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20, help="timed runs of each, after warm-up")
    parser.add_argument("--rounds", type=int, default=4, help="interleaved rounds per config")
    parser.add_argument("--no-append", action="store_true", help="do not append to RESULTS.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    machine = describe_machine()
    rows = []
    with tempfile.TemporaryDirectory(prefix="model_speed_") as workdir:
        for config_path in args.configs:
            try:
                row = measure(runnable_config(config_path, Path(workdir)), args, Path(workdir))
            except Exception as error:  # noqa: BLE001 - e.g. a config objdet cannot build yet
                row = {"config": config_path.stem, "error": f"{type(error).__name__}: {error}"}
            print(json.dumps(row), flush=True)
            rows.append(row)
    table = markdown_table(rows)
    print(table)
    if not args.no_append:
        tf_version = next((row["tf_version"] for row in rows if "tf_version" in row), None)
        append_results("model_speed", f"""Machine: {machine}{f'; TensorFlow {tf_version}' if tf_version else ''}.
{args.threads} threads for both (torch.set_num_threads; TF intra- and inter-op pools), batch 1,
one random uint8 image at the config's resolution, random weights; median ms per image of
{args.repeats} runs after {WARMUP} warm-up, the five interleaved in {args.rounds} rounds; load:
the machine's 1-minute load average after each row (above the core count, the timings are
those of a shared machine).

    {' '.join(['.venv/bin/python', 'benchmarks/model_speed.py', *sys.argv[1:]])}

{table}
""")


if __name__ == "__main__":
    main()
