"""torch.onnx's two exporters on objdet's network graphs: export time and ONNX Runtime speed.

``objdet.export.onnx_trace`` exports the network part of ``model.onnx`` with the TorchScript
exporter (+ onnxscript's optimizer) and falls back to the dynamo exporter. This measures, per
config (random weights, the config's canvas), the seconds each exporter takes and the median
milliseconds per image ONNX Runtime takes on each graph (batch 1, interleaved runs, the same
threads), and the largest output difference between the graphs and the eager network.

    python benchmarks/onnx_export.py CONFIG... [--threads 2] [--seconds 20] [--no-append]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import append_results, describe_machine

import objdet.config as cfg
from objdet.export.graph import fixed_canvas_size
from objdet.export.onnx_graph import DecodedNetwork
from objdet.export.onnx_trace import _dynamo_export, _torchscript_export
from objdet.models import build_model


def measure(config_path: Path, threads: int, seconds: float) -> dict[str, object]:
    import onnxruntime

    torch.manual_seed(0)
    model = build_model(cfg.load(config_path).model).eval()
    network = DecodedNetwork(model).eval()  # SSD / EfficientDet network + decoding
    canvas = fixed_canvas_size(model)
    example = torch.rand(2, 3, *canvas)
    row: dict[str, object] = {"config": config_path.stem}
    sessions = {}
    probe = torch.rand(1, 3, *canvas)
    with torch.no_grad():
        expected = network(probe)
    for name, exporter in (("torchscript", _torchscript_export), ("dynamo", _dynamo_export)):
        start = time.perf_counter()
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            proto = exporter(network, (example,), ["canvas"], ["boxes", "scores"], (True,))
        row[f"{name} export s"] = time.perf_counter() - start
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        sessions[name] = onnxruntime.InferenceSession(proto.SerializeToString(), options,
                                                      providers=["CPUExecutionProvider"])
        found = sessions[name].run(None, {"canvas": probe.numpy()})
        row[f"{name} max \\|Δ\\|"] = max(float(np.abs(f - e.numpy()).max())
                                     for f, e in zip(found, expected, strict=True))
    times: dict[str, list[float]] = {name: [] for name in sessions}
    deadline = time.perf_counter() + seconds
    feed = {"canvas": probe.numpy()}
    for session in sessions.values():
        session.run(None, feed)  # warm-up
    while time.perf_counter() < deadline:
        for name, session in sessions.items():  # interleaved: the same load for both
            start = time.perf_counter()
            session.run(None, feed)
            times[name].append(time.perf_counter() - start)
    for name, values in times.items():
        row[f"{name} ms/img"] = 1000 * statistics.median(values)
    row["ORT speed torchscript/dynamo"] = (float(row["dynamo ms/img"])  # type: ignore[arg-type]
                                           / float(row["torchscript ms/img"]))  # type: ignore[arg-type]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configs", nargs="+", type=Path)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    machine = describe_machine()
    rows = [measure(path, args.threads, args.seconds) for path in args.configs]
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "| " + " | ".join("---" for _ in columns) + " |"]
    for row in rows:
        lines.append("| " + " | ".join(f"{v:.3g}" if isinstance(v, float) else str(v)
                                        for v in row.values()) + " |")
    table = "\n".join(lines)
    print(machine)
    print(table)
    if not args.no_append:
        command = "python benchmarks/onnx_export.py " + " ".join(sys.argv[1:])
        append_results("ONNX export: TorchScript exporter vs dynamo exporter",
                       f"Machine: {machine}. {args.threads} threads.\nCommand: `{command}`\n\n"
                       f"{table}\n")


if __name__ == "__main__":
    main()
