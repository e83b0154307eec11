"""Initial weights from a fine_tune_checkpoint, and which parameters train.

fine_tune_checkpoint_type (the OD API TF2 names):
- ``classification``: a backbone's weights (an objdet checkpoint, or a torchvision / timm
  state_dict saved with ``torch.save``) go into the model's feature extractor only;
- ``detection``: everything whose name and shape match, except the class prediction head
  (its shape depends on num_classes), from another detector's checkpoint;
- ``full``: every weight must match (same architecture and classes).

``load_all_detection_checkpoint_vars`` (a TF1 field; the OD API's TF2 trainer refuses it) makes
a ``detection`` fine-tune from an OD API TF2 checkpoint restore every variable found with its
name and shape, box predictor included, as the TF1 trainer did (otherwise the feature extractor
alone, as TF2's ``restore_from_objects``). objdet's own checkpoints are always restored that way.

An OD API TF2 checkpoint (``DIR/ckpt-N`` or its directory) is read without TensorFlow and
restored as the OD API restores it (:mod:`objdet.models.checkpoints.importer`).
``zoo:NAME`` names a model of the TF2 zoo: its cached checkpoint, downloaded first if absent
(:func:`objdet.zoo.resolve_checkpoint`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

from torch import Tensor, nn

from objdet.engine.checkpoint_file import load_checkpoint_file
from objdet.errors import ConfigError, ObjdetError
from objdet.models.contract import as_detection_model

FINE_TUNE_TYPES = ("classification", "detection", "full")


@dataclass
class FineTuneReport:
    loaded: int
    skipped_shape: list[str]
    missing: list[str]

    def summary(self) -> str:
        return (
            f"loaded {self.loaded} tensors; {len(self.skipped_shape)} skipped for shape; "
            f"{len(self.missing)} model tensors not in the checkpoint"
        )


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """A state_dict from an objdet checkpoint (``model``/``ema`` entries; its checksum
    verified) or a bare state_dict."""
    try:
        data = load_checkpoint_file(path)
    except ObjdetError as error:
        raise ObjdetError(f"fine_tune_checkpoint {error}") from None
    if isinstance(data, dict) and "model" in data and isinstance(data["model"], dict):
        data = data["model"]
    elif isinstance(data, dict) and "state_dict" in data:
        data = data["state_dict"]
    if not isinstance(data, dict) or not all(isinstance(v, Tensor) for v in data.values()):
        raise ObjdetError(f"fine_tune_checkpoint {path}: not a state_dict of tensors")
    return data


def load_fine_tune_checkpoint(
    model: nn.Module, path: str | os.PathLike[str], checkpoint_type: str,
    *, load_all_detection_checkpoint_vars: bool = False,
) -> FineTuneReport:
    """Copy matching weights from ``path`` into ``model`` as ``checkpoint_type`` (and, for
    ``detection``, ``load_all_detection_checkpoint_vars``) says."""
    if checkpoint_type not in FINE_TUNE_TYPES:
        raise ConfigError(
            f"train_config.fine_tune_checkpoint_type: {checkpoint_type!r} is not supported; "
            f"supported: {', '.join(FINE_TUNE_TYPES)}"
        )
    from objdet.models.checkpoints.importer import (
        is_tf2_checkpoint,
        load_tf2_checkpoint,
        load_tf2_checkpoint_available,
    )

    if isinstance(path, str) and path.startswith("zoo:"):
        path = _zoo_checkpoint(path)
    if is_tf2_checkpoint(path):  # an OD API checkpoint (the TF2 zoo's ckpt-0, or a directory)
        if checkpoint_type == "detection" and load_all_detection_checkpoint_vars:
            imported = load_tf2_checkpoint_available(model, path)
        else:
            imported = load_tf2_checkpoint(model, path, checkpoint_type)
        return FineTuneReport(len(imported.loaded), [], imported.fresh)
    source = read_state_dict(path)
    if checkpoint_type == "full":
        try:
            model.load_state_dict(source, strict=True)
        except RuntimeError as error:
            raise ObjdetError(f"fine_tune_checkpoint {path} (type full) does not match: {error}") from None
        return FineTuneReport(len(source), [], [])
    if checkpoint_type == "classification":
        return _load_matching(as_detection_model(model).backbone(), source)
    return _load_matching(model, source)


def _zoo_checkpoint(reference: str) -> str | os.PathLike[str]:
    from objdet.zoo import resolve_checkpoint

    try:
        return resolve_checkpoint(reference)
    except ObjdetError as error:
        raise type(error)(f"train_config.fine_tune_checkpoint {reference!r}: {error}") from None


def _load_matching(target: nn.Module, source: dict[str, Tensor]) -> FineTuneReport:
    """Load tensors whose name matches (exactly, or by the longest common dotted suffix)."""
    own = target.state_dict()
    by_suffix: dict[str, str] = {}
    for name in source:
        parts = name.split(".")
        for i in range(len(parts)):
            by_suffix.setdefault(".".join(parts[i:]), name)
    loaded: dict[str, Tensor] = {}
    skipped, missing = [], []
    for name, tensor in own.items():
        source_name = name if name in source else _suffix_match(name, by_suffix)
        if source_name is None:
            missing.append(name)
        elif source[source_name].shape != tensor.shape:
            skipped.append(name)
        else:
            loaded[name] = source[source_name]
    target.load_state_dict(loaded, strict=False)
    return FineTuneReport(len(loaded), skipped, missing)


def _suffix_match(name: str, by_suffix: dict[str, str]) -> str | None:
    parts = name.split(".")
    for i in range(1, len(parts) - 1):
        match = by_suffix.get(".".join(parts[i:]))
        if match is not None:
            return match
    return None


def select_trainable(
    model: nn.Module, freeze_variables: Sequence[str] = (), update_trainable_variables: Sequence[str] = (),
) -> list[str]:
    """Apply the OD API's regex lists to parameter names; return the names that stay trainable.

    ``update_trainable_variables`` (if any) keeps only matching parameters trainable;
    ``freeze_variables`` then freezes matching ones. Regexes use ``re.search``.
    """
    try:
        keep = [re.compile(p) for p in update_trainable_variables]
        freeze = [re.compile(p) for p in freeze_variables]
    except re.error as error:
        raise ConfigError(f"train_config: invalid variable regex: {error}") from None
    trainable = []
    for name, parameter in model.named_parameters():
        wanted = (not keep or any(p.search(name) for p in keep)) and not any(p.search(name) for p in freeze)
        parameter.requires_grad_(wanted)
        if wanted:
            trainable.append(name)
    if not trainable:
        raise ConfigError("train_config: freeze_variables/update_trainable_variables leave no parameter to train")
    return trainable
