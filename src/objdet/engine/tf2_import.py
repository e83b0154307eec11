"""``objdet import-checkpoint``: an OD API TF2 checkpoint -> an objdet model directory.

The directory holds ``pipeline.config`` and ``ckpt-0.pt`` (model weights, step 0), which
``objdet eval``/``export``/``detect`` take as a trained model directory and ``objdet train``
takes as a ``fine_tune_checkpoint`` (any ``fine_tune_checkpoint_type``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import objdet.config
from objdet.atomic import require_writable_directory
from objdet.engine.checkpoint import CheckpointManager
from objdet.models.checkpoints.importer import ImportReport, load_tf2_checkpoint


@dataclass(frozen=True)
class ImportResult:
    checkpoint_path: Path  # the objdet checkpoint written
    report: ImportReport


def import_tf2_checkpoint(
    pipeline_config_path: str | os.PathLike[str],
    checkpoint: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    *,
    overrides: tuple[str, ...] = (),
) -> ImportResult:
    """Build the model ``pipeline_config_path`` describes, load every variable of the OD API
    TF2 ``checkpoint`` into it (type ``full``: nothing may be left unmatched), and write
    ``output_dir/ckpt-0.pt`` and ``output_dir/pipeline.config``."""
    from objdet.models import build_model

    config = objdet.config.load(pipeline_config_path, overrides)
    model = build_model(config.model)
    report = load_tf2_checkpoint(model, checkpoint, "full")
    output = Path(output_dir)
    require_writable_directory(output.absolute().parent, f"output_dir {output_dir}")
    output.mkdir(parents=True, exist_ok=True)
    objdet.config.save(config, output / "pipeline.config")
    path = CheckpointManager(output).save(
        0, {"model": model.state_dict(), "imported_from": os.fspath(checkpoint)}
    )
    return ImportResult(path, report)
