"""``objdet serve`` under load: requests/s and latency, batching off vs on, and memory
across hot reloads.

    .venv/bin/python benchmarks/serve_load.py [CONFIG] [--seconds 60] [--clients 8]
        [--threads 2] [--no-append]

The model is CONFIG (default: the raccoon demo's ssdlite_mobilenet_v3_large) with seeded
random weights, exported with input_type encoded_image_string_tensor (ONNX Runtime serves
it). A server subprocess on 127.0.0.1 serves it; a load process (another process, as a
real client would be) runs ``--clients`` threads, each sending one b64 JPEG (640x480 raccoon
images) per REST predict request on a kept-alive connection, back to back, for ``--seconds``.
Reported per setting: requests/s, p50 and p99 latency, failures; batching on uses
max_batch_size = clients, batch_timeout_micros 2000, num_batch_threads TF Serving's
default (one per core).

Also: the in-process ``OnnxPredictor`` on the same decoded JPEGs, one at a time, in this
process (server overhead = server requests/s without batching / in-process images/s), and
the server's resident memory after each of 10 hot reloads (a new version directory renamed
into the base path, the old one unloaded). Appends a markdown table to RESULTS.md.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import io
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from machine import append_results, describe_machine

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO / "src" / "objdet" / "samples" / "ssdlite_mobilenet_v3_large_raccoon.config"
RACCOON_IMAGES = REPO / "datasets" / "raccoon" / "images"


def jpeg_requests(count: int = 8) -> list[bytes]:
    """REST predict bodies, one 640x480 raccoon JPEG each."""
    from PIL import Image

    bodies = []
    for index in range(1, count + 1):
        image = Image.open(RACCOON_IMAGES / f"raccoon-{index}.jpg").convert("RGB").resize((640, 480))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=90)
        b64 = base64.b64encode(buffer.getvalue()).decode()
        bodies.append(json.dumps({"instances": [{"b64": b64}]}).encode())
    return bodies


# -- the load process ----------------------------------------------------------------------
def run_load(port: int, clients: int, seconds: float) -> dict[str, Any]:
    """``clients`` threads sending predict requests back to back; latencies in ms."""
    bodies = jpeg_requests()
    latencies: list[float] = []
    failures = [0]
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client(index: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine, count = [], 0
        while time.monotonic() < deadline:
            body = bodies[(index + count) % len(bodies)]
            count += 1
            start = time.perf_counter()
            try:
                connection.request("POST", "/v1/models/m:predict", body,
                                   {"Content-Type": "application/json"})
                response = connection.getresponse()
                response.read()
                ok = response.status == 200
            except OSError:
                ok = False
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            if ok:
                mine.append((time.perf_counter() - start) * 1000)
            else:
                with lock:
                    failures[0] += 1
        with lock:
            latencies.extend(mine)

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(index,)) for index in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    latencies.sort()
    return {"requests_per_s": round(len(latencies) / elapsed, 2),
            "p50_ms": round(statistics.median(latencies), 1) if latencies else None,
            "p99_ms": round(latencies[int(0.99 * (len(latencies) - 1))], 1) if latencies else None,
            "requests": len(latencies), "failures": failures[0]}


# -- the server ----------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    def __init__(self, base: Path, threads: int, extra: list[str], log: Path) -> None:
        self.port = free_port()
        env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": str(threads)}
        code = (f"import torch; torch.set_num_threads({threads}); "
                "from objdet.cli.main import main; raise SystemExit(main())")
        self.process = subprocess.Popen(
            [sys.executable, "-c", code, "serve", "--host", "127.0.0.1", "--port", "0",
             "--rest_api_port", str(self.port), "--model_name", "m", "--model_base_path", str(base),
             "--file_system_poll_wait_seconds", "0.5", *extra],
            stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 300
        while self.get("/v1/ready")[0] != 200:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start; see {log}")
            time.sleep(0.2)

    def get(self, path: str) -> tuple[int, Any]:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            connection.request("GET", path)
            response = connection.getresponse()
            return response.status, json.loads(response.read())
        except (OSError, ValueError):
            return 0, None

    def rss_mib(self) -> tuple[float, float]:
        """(current, peak) resident memory of the server in MiB."""
        fields = {}
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            fields[key] = value
        return (int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(60)


def load_from_process(port: int, clients: int, seconds: float) -> dict[str, Any]:
    output = subprocess.run([sys.executable, __file__, "--load", str(port), "--clients",
                             str(clients), "--seconds", str(seconds)],
                            capture_output=True, text=True, check=True, cwd=Path(__file__).parent)
    return json.loads(output.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def export_encoded(config_path: Path, directory: Path) -> Path:
    import torch

    from objdet import config as cfg
    from objdet.engine.checkpoint import CheckpointManager
    from objdet.export import export_inference_graph
    from objdet.models import build_model

    config = cfg.load(config_path)
    config.ClearField("train_input_reader")
    config.ClearField("eval_input_reader")
    config.train_config.ClearField("fine_tune_checkpoint")
    torch.manual_seed(0)
    model = build_model(config.model).eval()
    cfg.save(config, directory / "pipeline.config")
    CheckpointManager(directory / "model").save(0, {"model": model.state_dict(), "ema": None})
    export_inference_graph(pipeline_config_path=directory / "pipeline.config",
                           trained_checkpoint_dir=directory / "model",
                           output_directory=directory / "exported",
                           input_type="encoded_image_string_tensor")
    return directory / "exported"


def in_process_images_per_s(export: Path, threads: int, seconds: float) -> float:
    import torch

    from objdet.inference.inputs import decode_image_bytes
    from objdet.inference.predictor import Predictor

    torch.set_num_threads(threads)
    predictor = Predictor.from_export(export, runtime="onnxruntime")
    images = [base64.b64decode(json.loads(body)["instances"][0]["b64"]) for body in jpeg_requests()]
    predictor.predict_pixels(decode_image_bytes(images[0]))
    count, start = 0, time.monotonic()
    while time.monotonic() - start < seconds:
        predictor.predict_pixels(decode_image_bytes(images[count % len(images)]))  # decode too
        count += 1
    return count / (time.monotonic() - start)


def reload_memory(export: Path, base: Path, threads: int, log: Path, reloads: int = 10,
                  ) -> list[float]:
    server = Server(base, threads, [], log)
    try:
        rss = [server.rss_mib()[0]]
        for version in range(2, reloads + 2):
            staging = base / f".{version}.tmp"
            shutil.copytree(export, staging)
            staging.rename(base / str(version))
            while True:
                _, body = server.get("/v1/models/m")
                states = {int(e["version"]): e["state"] for e in (body or {}).get("model_version_status", [])}
                if states.get(version) == "AVAILABLE" and states.get(version - 1) == "END":
                    break
                time.sleep(0.1)
            shutil.rmtree(base / str(version - 1))
            rss.append(server.rss_mib()[0])
        rss.append(server.rss_mib()[1])  # the peak, last
        return rss
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", nargs="?", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2, help="server intra-op threads")
    parser.add_argument("--load", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args()
    if args.load is not None:
        print(json.dumps(run_load(args.load, args.clients, args.seconds)))
        return
    with tempfile.TemporaryDirectory() as work:
        workdir = Path(work)
        export = export_encoded(args.config, workdir)
        rows = []
        for batching in (False, True):
            base = workdir / f"base-{batching}"
            shutil.copytree(export, base / "1")
            extra = []
            if batching:
                parameters = workdir / "batching.config"
                parameters.write_text(f"max_batch_size {{ value: {args.clients} }}\n"
                                      "batch_timeout_micros { value: 2000 }\n")
                extra = ["--batching_parameters_file", str(parameters)]
            server = Server(base, args.threads, extra, workdir / f"server-{batching}.log")
            try:
                result = load_from_process(server.port, args.clients, args.seconds)
            finally:
                server.stop()
            row = {"batching": "on" if batching else "off", **result}
            rows.append(row)
            print(json.dumps(row), flush=True)
        in_process = in_process_images_per_s(export, args.threads, min(args.seconds, 20))
        base = workdir / "base-reload"
        shutil.copytree(export, base / "1")
        rss = reload_memory(export, base, args.threads, workdir / "server-reload.log")
    off, on = rows
    summary = {"in_process_images_per_s": round(in_process, 2),
               "server_vs_in_process": round(off["requests_per_s"] / in_process, 2),
               "batching_speedup": round(on["requests_per_s"] / off["requests_per_s"], 2),
               "rss_mib_after_each_reload": [round(value) for value in rss[:-1]],
               "peak_rss_mib": round(rss[-1])}
    print(json.dumps(summary), flush=True)
    if not args.no_append:
        table = ["| batching | requests/s | p50 ms | p99 ms | requests | failures |",
                 "| --- | --- | --- | --- | --- | --- |"]
        table += [f"| {r['batching']} | {r['requests_per_s']} | {r['p50_ms']} | {r['p99_ms']} | "
                  f"{r['requests']} | {r['failures']} |" for r in rows]
        append_results(
            f"serve_load: {args.config.stem}, {args.clients} clients, {args.seconds:g} s per setting",
            f"Machine: {describe_machine()}; server intra-op threads {args.threads}; REST, one "
            "b64 640x480 JPEG per request, random weights (NMS at full load).\n\n"
            + "\n".join(table) + "\n\n"
            f"In-process OnnxPredictor (decode + predict, one at a time): {summary['in_process_images_per_s']} "
            f"images/s; server without batching / in-process: {summary['server_vs_in_process']}; "
            f"batching on / off: {summary['batching_speedup']}.\n\n"
            f"Server RSS (MiB) at start and after each of 10 hot reloads: "
            f"{summary['rss_mib_after_each_reload']}; peak {summary['peak_rss_mib']}.")


if __name__ == "__main__":
    main()
