"""objdet against the OD API's own models, level by level, on raccoon images.

    python benchmarks/odapi_parity.py --reference_python /tmp/odapi-ref/bin/python \\
        ../shared/data/odapi/configs/tf2/ssd_mobilenet_v2_320x320_coco17_tpu-8.config ...

For each config, the reference environment's python runs
``benchmarks/odapi_reference/dump_reference.py``: it builds the OD API model with a fixed seed,
gives it weights whose features depend on the input, saves its TF2 checkpoint and dumps every
level. objdet then imports that checkpoint (no TensorFlow) and compares
(``objdet.models.checkpoints.parity``). One JSON line per config:
``{"config", "preprocessed_max_abs", "anchors_max_abs", "raw_boxes_max_abs",
"raw_classes_max_abs", "postprocess_matched", "end_to_end_matched", "ok"}``; the table goes to
benchmarks/RESULTS.md. Exit status 0 only when every config is ok.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from machine import append_results, describe_machine

DUMP_SCRIPT = HERE / "odapi_reference" / "dump_reference.py"
RACCOON = HERE.parent.parent / "shared" / "data" / "raccoon"


def default_images(count: int = 2) -> list[Path]:
    images = sorted(RACCOON.rglob("*.jpg"))
    if not images:
        raise SystemExit(f"no raccoon images under {RACCOON}; pass --images")
    return images[:count]


def dump_reference(python: str, config: Path, images: list[Path], output_dir: Path, seed: int,
                   overrides: list[str], calibration: list[Path], extra: list[str]) -> None:
    command = [python, str(DUMP_SCRIPT), "--config", str(config), "--seed", str(seed),
               "--output_dir", str(output_dir), "--images", *map(str, images),
               "--calibration_images", *map(str, calibration), *extra]
    for override in overrides:
        command += ["--override", override]
    completed = subprocess.run(command, check=False, capture_output=True, text=True)
    if completed.returncode != 0:
        tail = (completed.stderr or completed.stdout).strip().splitlines()[-5:]
        raise RuntimeError(f"reference dump failed for {config.name}: {' | '.join(tail)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("configs", nargs="*", type=Path)
    parser.add_argument("--reference_python",
                        help="python of the OD API reference environment (TensorFlow 2.21)")
    parser.add_argument("--from_dumps", type=Path, default=None,
                        help="compare the reference dumps already in this folder's subfolders "
                        "(benchmarks/odapi_reference/make_references.sh) instead of making them")
    parser.add_argument("--images", nargs="*", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--override", action="append", default=[], metavar="FIELD=VALUE",
                        help="config override applied on both sides (e.g. a tiny variant)")
    parser.add_argument("--work_dir", type=Path, default=None,
                        help="keep the reference dumps here (default: a temporary folder)")
    parser.add_argument("--no_results", action="store_true", help="do not append to RESULTS.md")
    parser.add_argument("--tf_float32_mean", action="store_true",
                        help="keep TF's float32 squeeze-excite mean in the reference (by default "
                        "it is averaged in float64: TF's float32 reduce_mean is off by ~3e-6 "
                        "over large maps, which EfficientNet grows to 1e-4)")
    args = parser.parse_args()

    from objdet.models.checkpoints.parity import ParityResult, compare_with_reference

    if args.from_dumps is not None:
        args.configs = sorted(path for path in args.from_dumps.iterdir()
                              if (path / "reference.npz").is_file())
    elif not args.configs or not args.reference_python:
        parser.error("give CONFIG... and --reference_python, or --from_dumps DIR")
    images = args.images or default_images()
    # Batch-norm statistics are measured on these (two images would make 1x1 maps' BNs +-1).
    calibration = sorted(set(images) | set(default_images(8)))
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="odapi_parity_"))
    results: list[ParityResult] = []
    rows = []
    for config in args.configs:
        name = config.name.removesuffix(".config")
        started = time.perf_counter()
        try:
            if args.from_dumps is None:
                dump_reference(args.reference_python, config, images, work / name, args.seed,
                               args.override, calibration,
                               [] if args.tf_float32_mean else ["--exact_squeeze_mean"])
            result = compare_with_reference(config if args.from_dumps else work / name, name=name)
        except Exception as error:  # noqa: BLE001 - one config failing must not hide the others
            print(json.dumps({"config": name, "ok": False, "error": f"{type(error).__name__}: {error}"}),
                  flush=True)
            rows.append(f"| {name} | error: {str(error)[:120]} | | | | | | no |")
            continue
        results.append(result)
        print(result.as_json(), flush=True)
        rows.append(
            f"| {name} | {result.preprocessed_max_abs:.2g} (≤ {result.preprocessed_tolerance:.2g}) "
            f"| {result.anchors_max_abs:.2g} | "
            f"{result.raw_boxes_max_abs:.2g} | {result.raw_classes_max_abs:.2g} | "
            f"{result.postprocess_matched:.3f} | {result.end_to_end_matched:.3f} | "
            f"{'yes' if result.ok else 'no'} ({time.perf_counter() - started:.0f} s) |"
        )
    all_ok = len(results) == len(args.configs) and all(result.ok for result in results)
    if not args.no_results:
        overrides = f" Overrides: `{' '.join(args.override)}`." if args.override else ""
        if args.from_dumps is None and not args.tf_float32_mean:
            overrides += " Reference squeeze-excite mean in float64 (`--exact_squeeze_mean`)."
        command = (f"--from_dumps {args.from_dumps}" if args.from_dumps else
                   f"--reference_python PY {' '.join(c.name for c in args.configs)}")
        body = (
            f"`python benchmarks/odapi_parity.py {command}`"
            f" on {len(images)} raccoon images, seed {args.seed}.{overrides} Machine: "
            f"{describe_machine()}. Raw predictions: max |Δ| "
            "relative to the reference's largest value; matched: share of the OD API's top-100 "
            "detections reproduced (same class, IoU >= 0.99, |Δscore| <= 1e-4).\n\n"
            "| config | preprocessed max abs | anchors max abs | raw boxes (rel) | raw classes (rel) "
            "| post-processing matched | end to end matched | ok |\n"
            "| --- | --- | --- | --- | --- | --- | --- | --- |\n" + "\n".join(rows)
        )
        append_results("OD API parity (objdet vs the OD API's own models)", body)
    return 0 if all_ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
