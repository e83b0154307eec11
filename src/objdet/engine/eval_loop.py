"""``objdet eval``: evaluate the latest checkpoint of a model_dir, or each new one as it appears.

Metrics go to ``<eval_dir>/metrics-<step>.json`` (and ``metrics.json``, the latest) and to
TensorBoard under ``<eval_dir>``. The OD API's model_main_tf2 with --checkpoint_dir does the
same continuous evaluation.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from objdet.atomic import atomic_write, require_writable_directory
from objdet.engine.checkpoint import CheckpointManager
from objdet.engine.devices import resolve_device
from objdet.engine.evaluate import build_eval_inputs, evaluate_detector
from objdet.engine.restore import restore_model
from objdet.errors import ConfigError, ObjdetError

logger = logging.getLogger(__name__)


def evaluate_checkpoint(config: Any, checkpoint_path: Path, *, device: str = "cpu", num_workers: int = 0) -> tuple[int, dict[str, float]]:
    """(step, metrics) of one checkpoint on the first eval_input_reader."""
    inputs = build_eval_inputs(config, num_workers)
    if inputs is None:
        raise ConfigError("eval_input_reader: none configured; objdet eval needs one")
    restored = restore_model(config, checkpoint_path)
    metrics = evaluate_detector(restored.model.to(device), inputs.loader, inputs.evaluators,
                                device=device, max_images=inputs.max_images)
    return restored.step, metrics


def write_metrics_json(eval_dir: Path, step: int, metrics: dict[str, float]) -> Path:
    """Atomically write ``metrics-<step>.json`` and ``metrics.json`` (the latest) into
    ``eval_dir``; returns the first. ``objdet eval`` and the trainer's evaluations write them."""
    payload = json.dumps({"step": step, "metrics": metrics}, indent=2, sort_keys=True)
    path = eval_dir / f"metrics-{step}.json"
    for target in (path, eval_dir / "metrics.json"):
        with atomic_write(target, "w") as handle:
            handle.write(payload)
    return path


def write_metrics(eval_dir: Path, step: int, metrics: dict[str, float]) -> Path:
    """Atomically write ``metrics-<step>.json`` and ``metrics.json``; log to TensorBoard."""
    from torch.utils.tensorboard import SummaryWriter

    path = write_metrics_json(eval_dir, step, metrics)
    writer = SummaryWriter(str(eval_dir))
    for name, value in metrics.items():
        writer.add_scalar(f"eval/{name}", value, step)
    writer.close()
    return path


def new_checkpoints(checkpoint_dir: Path, *, run_once: bool, timeout_s: float, poll_s: float = 10.0) -> Iterator[Path]:
    """The latest checkpoint (run_once), or each newer one until none appears for ``timeout_s``."""
    manager = CheckpointManager(checkpoint_dir)
    seen: str | None = None
    waited = 0.0
    while True:
        latest = manager.latest_path()
        if latest is not None and latest.name != seen:
            seen, waited = latest.name, 0.0
            yield latest
            if run_once:
                return
            continue
        if run_once:
            raise ObjdetError(f"{checkpoint_dir}: no checkpoint found (expected ckpt-<step>.pt files)")
        if waited >= timeout_s:
            return
        time.sleep(poll_s)
        waited += poll_s


def run_eval(config: Any, checkpoint_dir: Path, eval_dir: Path, *, run_once: bool = False,
             timeout_s: float = 3600.0, device: str | None = None) -> list[tuple[int, dict[str, float]]]:
    """Evaluate checkpoints as ``new_checkpoints`` yields them; return (step, metrics) pairs."""
    device = str(resolve_device(device))
    require_writable_directory(eval_dir, f"eval_dir {eval_dir}")
    results = []
    for checkpoint in new_checkpoints(checkpoint_dir, run_once=run_once, timeout_s=timeout_s):
        step, metrics = evaluate_checkpoint(config, checkpoint, device=device)
        path = write_metrics(eval_dir, step, metrics)
        logger.info("step %d: %s", step, path)
        results.append((step, metrics))
    return results
