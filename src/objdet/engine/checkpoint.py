"""Checkpoints in a model_dir: ``ckpt-<step>.pt`` files and a ``checkpoint.json`` index.

Every write is atomic, so a crash (or a NaN stop) never leaves a half-written checkpoint and
the last good one stays loadable. Each file carries the sha256 of its bytes, checked on load
(objdet.engine.checkpoint_file). The manager keeps the newest ``keep_last`` checkpoints plus
the best one by an eval metric.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from objdet.atomic import atomic_write
from objdet.engine.checkpoint_file import load_checkpoint_file, write_checkpoint_file
from objdet.errors import ObjdetError

INDEX_NAME = "checkpoint.json"
_CHECKPOINT_NAME = re.compile(r"^ckpt-(\d+)\.pt$")


@dataclass
class CheckpointIndex:
    checkpoints: list[str] = field(default_factory=list)  # oldest first
    best: str | None = None
    best_metric: str | None = None
    best_value: float | None = None

    @property
    def latest(self) -> str | None:
        return self.checkpoints[-1] if self.checkpoints else None


class CheckpointManager:
    """Saves, lists and loads the checkpoints of one model_dir."""

    def __init__(self, model_dir: str | os.PathLike[str], keep_last: int = 5) -> None:
        self.model_dir = Path(model_dir)
        self.keep_last = keep_last

    def read_index(self) -> CheckpointIndex:
        path = self.model_dir / INDEX_NAME
        if not path.exists():
            # A directory of checkpoints without an index (e.g. copied by hand): list files.
            names = sorted(
                (p.name for p in self.model_dir.glob("ckpt-*.pt") if _CHECKPOINT_NAME.match(p.name)),
                key=lambda n: int(_CHECKPOINT_NAME.match(n).group(1)),  # type: ignore[union-attr]
            )
            return CheckpointIndex(checkpoints=names)
        try:
            data = json.loads(path.read_text())
            return CheckpointIndex(**data)
        except (json.JSONDecodeError, TypeError) as error:
            raise ObjdetError(f"{path}: not a valid checkpoint index: {error}") from None

    def latest_path(self) -> Path | None:
        latest = self.read_index().latest
        return self.model_dir / latest if latest else None

    def save(
        self, step: int, state: dict[str, Any], metric: tuple[str, float] | None = None,
        higher_is_better: bool = True,
    ) -> Path:
        """Write ``ckpt-<step>.pt``; update the index; prune old ones (never the best)."""
        name = f"ckpt-{step}.pt"
        path = self.model_dir / name
        with atomic_write(path, "wb") as handle:
            write_checkpoint_file({**state, "step": step}, handle)
        index = self.read_index()
        index.checkpoints = [n for n in index.checkpoints if n != name] + [name]
        if metric is not None:
            self._update_best(index, name, metric, higher_is_better)
        self._prune(index)
        self._write_index(index)
        return path

    def record_metric(self, step: int, metric: tuple[str, float], higher_is_better: bool = True) -> None:
        """Mark ``ckpt-<step>.pt`` as best if ``metric`` beats the best so far."""
        index = self.read_index()
        name = f"ckpt-{step}.pt"
        if name in index.checkpoints:
            self._update_best(index, name, metric, higher_is_better)
            self._write_index(index)

    @staticmethod
    def load(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
        """The state saved in ``path``, its checksum verified (``ObjdetError`` on a mismatch)."""
        state = load_checkpoint_file(path, map_location)
        if not isinstance(state, dict):
            raise ObjdetError(f"{path}: not an objdet checkpoint (found a {type(state).__name__})")
        return state

    def _update_best(
        self, index: CheckpointIndex, name: str, metric: tuple[str, float], higher_is_better: bool
    ) -> None:
        metric_name, value = metric
        if math.isnan(value):  # NaN never wins
            return
        better = (
            index.best_value is None
            or (higher_is_better and value > index.best_value)
            or (not higher_is_better and value < index.best_value)
        )
        if better:
            index.best, index.best_metric, index.best_value = name, metric_name, float(value)

    def _prune(self, index: CheckpointIndex) -> None:
        keep = set(index.checkpoints[-self.keep_last :]) | ({index.best} if index.best else set())
        for name in [n for n in index.checkpoints if n not in keep]:
            (self.model_dir / name).unlink(missing_ok=True)
        index.checkpoints = [n for n in index.checkpoints if n in keep]

    def _write_index(self, index: CheckpointIndex) -> None:
        with atomic_write(self.model_dir / INDEX_NAME, "w") as handle:
            json.dump(index.__dict__, handle, indent=2)

