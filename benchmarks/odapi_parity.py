"""objdet against the OD API's own models, level by level, on raccoon images.

    python benchmarks/odapi_parity.py --reference_python /tmp/odapi-ref/bin/python \\
        ../shared/data/odapi/configs/tf2/ssd_mobilenet_v2_320x320_coco17_tpu-8.config ...

For each config, the reference environment's python runs
``benchmarks/odapi_reference/dump_reference.py``: it builds the OD API model with a fixed seed,
gives it weights whose features depend on the input, saves its TF2 checkpoint and dumps every
level. objdet then imports that checkpoint (no TensorFlow) and compares
(``objdet.models.checkpoints.parity``). SSD / EfficientDet, Faster R-CNN / Mask R-CNN and
CenterNet configs (``faster_rcnn`` adds proposals, the second stage and masks; CenterNet
its heads and keypoints). One JSON line per config (``ParityResult``: each level's worst
value over the images, ``failures`` naming the levels outside their tolerance); the table
goes to benchmarks/RESULTS.md. Exit status 0 only when every config is ok.

Full-size two-stage and hourglass models are slow on a small CPU: ``--images`` with one
raccoon image and a smaller ``--calibration_count`` cut the time.
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

from objdet.models.checkpoints.parity import ParityResult

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


COLUMNS = ["config", "preprocessed max abs", "anchors max abs", "raw boxes (rel)",
           "raw classes (rel)", "proposals matched (fed / e2e)", "2nd stage boxes / classes (rel)",
           "masks: head max / reframed mean abs", "keypoints: coords / scores",
           "post-processing matched", "end to end matched", "ok"]
LEGEND = (
    "Raw predictions: max |Δ| relative to the reference's largest value (SSD: box encodings / "
    "class logits; Faster R-CNN: RPN box encodings / objectness; CenterNet: box and keypoint "
    "regression heads / center and keypoint heatmaps). Proposals: share of the OD API's "
    "proposals reproduced (IoU >= 0.99) by objdet's first-stage NMS fed the OD API's RPN "
    "outputs / end to end. 2nd stage: objdet's box classifier on its own features and the OD "
    "API's proposals. Masks: mask head fed the OD API's detections (max |Δ| of probabilities) / "
    "masks reframed to the image end to end (mean |Δ|, <= 1e-3). Keypoints: max |Δ| of "
    "coordinates / the image's longer side (<= 1e-3) / of scores (<= 1e-4) on matched "
    "detections (det.: how many of them are of the keypoint class, fewest on an image). Matched: share of the OD API's top-100 detections reproduced (same class, "
    "IoU >= 0.99, |Δscore| <= 1e-4), fed the OD API's raw outputs / end to end. – : the family "
    "has no such level."
)


def _number(value: float | None, digits: str = ".2g") -> str:
    return "–" if value is None else format(value, digits)


def table_row(result: ParityResult, seconds: float) -> str:
    """One RESULTS.md row (COLUMNS) for ``result``."""
    def pair(first: float | None, second: float | None, digits: str = ".2g") -> str:
        if first is None and second is None:
            return "–"
        return f"{_number(first, digits)} / {_number(second, digits)}"

    verdict = "yes" if result.ok else "no: " + "; ".join(result.failures)
    cells = [
        result.config,
        f"{result.preprocessed_max_abs:.2g} (≤ {result.preprocessed_tolerance:.2g})",
        _number(result.anchors_max_abs),
        f"{result.raw_boxes_max_abs:.2g}", f"{result.raw_classes_max_abs:.2g}",
        pair(result.proposals_matched, result.end_to_end_proposals_matched, ".3f"),
        pair(result.second_stage_boxes_max_abs, result.second_stage_classes_max_abs),
        pair(result.mask_head_max_abs, result.masks_mean_abs),
        pair(result.keypoints_max_abs, result.keypoint_scores_max_abs)
        + ("" if result.keypoint_detections_compared is None
           else f" ({result.keypoint_detections_compared} det.)"),
        f"{result.postprocess_matched:.3f}", f"{result.end_to_end_matched:.3f}",
        f"{verdict} ({seconds:.0f} s)",
    ]
    return "| " + " | ".join(cells) + " |"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("configs", nargs="*", type=Path)
    parser.add_argument("--reference_python",
                        help="python of the OD API reference environment (TensorFlow 2.21)")
    parser.add_argument("--from_dumps", type=Path, default=None,
                        help="compare the reference dumps already in this folder's subfolders "
                        "(benchmarks/odapi_reference/make_references.sh) instead of making them")
    parser.add_argument("--images", nargs="*", type=Path, default=None)
    parser.add_argument("--calibration_count", type=int, default=8,
                        help="batch-norm statistics are measured on the dumped images and the "
                        "first N raccoon images (default 8)")
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

    from objdet.models.checkpoints.parity import compare_with_reference

    if args.from_dumps is not None:
        args.configs = sorted(path for path in args.from_dumps.iterdir()
                              if (path / "reference.npz").is_file())
    elif not args.configs or not args.reference_python:
        parser.error("give CONFIG... and --reference_python, or --from_dumps DIR")
    images = args.images or default_images()
    # Batch-norm statistics are measured on these (two images would make 1x1 maps' BNs +-1).
    calibration = sorted(set(images) | set(default_images(args.calibration_count)))
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
            rows.append(f"| {name} | error: {str(error)[:120]} |" + " |" * (len(COLUMNS) - 2) + " no |")
            continue
        results.append(result)
        print(result.as_json(), flush=True)
        rows.append(table_row(result, time.perf_counter() - started))
    all_ok = len(results) == len(args.configs) and all(result.ok for result in results)
    if not args.no_results:
        overrides = f" Overrides: `{' '.join(args.override)}`." if args.override else ""
        if args.from_dumps is None and not args.tf_float32_mean:
            overrides += " Reference squeeze-excite mean in float64 (`--exact_squeeze_mean`)."
        command = (f"--from_dumps {args.from_dumps}" if args.from_dumps else
                   f"--reference_python PY {' '.join(c.name for c in args.configs)}")
        if args.images:
            command += " --images " + " ".join(path.name for path in args.images)
        if args.calibration_count != 8:
            command += f" --calibration_count {args.calibration_count}"
        if args.from_dumps is None:
            overrides += f" Batch norms calibrated on {len(calibration)} images."
        body = (
            f"`python benchmarks/odapi_parity.py {command}`"
            f" on {len(images)} raccoon image(s) ({', '.join(path.name for path in images)}), "
            f"seed {args.seed}.{overrides} Machine: {describe_machine()}. {LEGEND}\n\n"
            "| " + " | ".join(COLUMNS) + " |\n|" + " --- |" * len(COLUMNS) + "\n" + "\n".join(rows)
        )
        append_results("OD API parity (objdet vs the OD API's own models)", body)
    return 0 if all_ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
