"""OD API TF2 checkpoints -> objdet model weights, as ``fine_tune_checkpoint_type`` says.

The OD API restores (``SSDMetaArch.restore_from_objects``):

- ``classification``: the backbone alone, from a checkpoint whose keys start
  ``feature_extractor/`` (a ``tf.train.Checkpoint(feature_extractor=backbone)``); its
  classifier head is left over, as the OD API's ``expect_partial`` allows;
- ``detection``: the feature extractor (backbone and pyramid) of a detection checkpoint,
  ``model/_feature_extractor/...``; the box predictor starts fresh;
- ``full``: every variable of the model.

Within what a type restores, every model tensor must be found with its shape, and every
checkpoint variable there must land somewhere: the error lists the names either way.
Variables outside it (optimizer slots, ``save_counter``, a predictor a ``detection``
fine-tune leaves out) are counted in the report, not loaded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from objdet.errors import CheckpointError
from objdet.models.checkpoints.tf_bundle import TFCheckpoint
from objdet.models.checkpoints.variable_map import Target, to_torch_layout
from objdet.models.contract import as_detection_model

FINE_TUNE_CHECKPOINT_TYPES = ("classification", "detection", "full")
_LISTED = 12  # names shown per problem in an error message


@dataclass
class ImportReport:
    """What an import loaded (state_dict names) and what it left alone (checkpoint keys)."""

    checkpoint: str
    checkpoint_type: str
    loaded: list[str] = field(default_factory=list)
    not_restored: list[str] = field(default_factory=list)  # outside the type's scope
    fresh: list[str] = field(default_factory=list)  # model tensors left as initialized

    def summary(self) -> str:
        return (
            f"{self.checkpoint} ({self.checkpoint_type}): loaded {len(self.loaded)} tensors; "
            f"{len(self.fresh)} model tensors freshly initialized; "
            f"{len(self.not_restored)} checkpoint variables not restored"
        )


def is_tf2_checkpoint(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` names a TF2 checkpoint: ``PREFIX`` with ``PREFIX.index`` beside it,
    or a directory holding a ``checkpoint`` state file."""
    path = os.fspath(path)
    return os.path.isfile(path + ".index") or os.path.isfile(os.path.join(path, "checkpoint"))


# What a ``detection`` fine-tune restores: the feature extractor (Faster R-CNN's Keras
# extractors are saved as the two models cut from the backbone, as its restore_from_objects).
DETECTION_SCOPES = ("model/_feature_extractor/", "model/_feature_extractor_for_proposal_features/",
                    "model/_feature_extractor_for_box_classifier_features/")


def _scoped_map(model: nn.Module, checkpoint_type: str) -> dict[str, Target]:
    """Checkpoint key -> target for the variables ``checkpoint_type`` restores."""
    if checkpoint_type not in FINE_TUNE_CHECKPOINT_TYPES:
        raise CheckpointError(
            f"fine_tune_checkpoint_type {checkpoint_type!r}: expected one of "
            f"{', '.join(FINE_TUNE_CHECKPOINT_TYPES)}"
        )
    detector = as_detection_model(model)
    if checkpoint_type == "classification":
        return detector.tf2_classification_map()
    full = detector.tf2_variable_map()
    if checkpoint_type == "full":
        return full
    return {key: target for key, target in full.items()
            if key.startswith(DETECTION_SCOPES)}


def _in_scope(key: str, checkpoint_type: str) -> bool:
    """Whether a checkpoint variable must land in the model: every model variable of a
    ``full`` import, the feature extractor's of a ``detection`` one. A classification
    checkpoint's classifier head and optimizer slots are expected leftovers."""
    if key.startswith("_") or "/.OPTIMIZER_SLOT/" in key:
        return False
    if checkpoint_type == "full":
        return key.startswith("model/")
    return checkpoint_type == "detection" and key.startswith(DETECTION_SCOPES)


def _problem(kind: str, names: list[str]) -> str:
    shown = ", ".join(names[:_LISTED]) + (f" (+{len(names) - _LISTED} more)" if len(names) > _LISTED else "")
    return f"{len(names)} {kind}: {shown}"


def load_tf2_checkpoint(
    model: nn.Module, checkpoint: str | os.PathLike[str], checkpoint_type: str = "full"
) -> ImportReport:
    """Load an OD API TF2 checkpoint (``DIR/ckpt-N`` or ``DIR``) into ``model`` in place.

    Raises CheckpointError naming the model tensors the checkpoint lacks, the checkpoint
    variables no model tensor takes, and the shape mismatches; nothing is loaded then.
    """
    reader = TFCheckpoint.open(checkpoint)
    scoped = _scoped_map(model, checkpoint_type)
    ignored = {key for key, target in scoped.items() if target.layout == "ignored"}
    variable_map = {key: target for key, target in scoped.items() if key not in ignored}
    state = model.state_dict()
    keys = set(reader.keys())
    unmatched = sorted(key for key in variable_map if key not in keys)
    unused = sorted(key for key in keys if _in_scope(key, checkpoint_type)
                    and key not in variable_map and key not in ignored)
    unknown_targets = sorted({t.name for t in variable_map.values() if t.name not in state})
    uncovered = _uncovered(model, variable_map) if checkpoint_type == "full" else []
    mismatched, values = [], {}
    for key, target in variable_map.items():
        if key not in keys or target.name not in state:
            continue
        value = torch.from_numpy(to_torch_layout(reader.read(key), target.layout).copy())
        expected = tuple(state[target.name].shape)
        if tuple(value.shape) != expected:
            mismatched.append(f"{key} {tuple(reader.shape(key))} -> {target.name} {expected}")
            continue
        values[target.name] = value
    problems = [
        _problem(kind, names) for kind, names in (
            ("model variables missing from the checkpoint", unmatched),
            ("checkpoint variables no model tensor takes (unused)", unused),
            ("shape mismatches", mismatched),
            ("map targets not in the model (an objdet bug)", unknown_targets),
            ("model tensors no checkpoint variable fills", uncovered),
        ) if names
    ]
    if problems:
        raise CheckpointError(f"{checkpoint} ({checkpoint_type}): " + "; ".join(problems))
    _copy_into(model, values)
    report = ImportReport(os.fspath(checkpoint), checkpoint_type, loaded=sorted(values))
    report.not_restored = sorted(key for key in keys if key not in variable_map and not key.startswith("_"))
    report.fresh = sorted(name for name in state if name not in values
                          and not name.endswith("num_batches_tracked"))
    return report


def load_tf2_checkpoint_available(model: nn.Module, checkpoint: str | os.PathLike[str]
                                  ) -> ImportReport:
    """A ``detection`` fine-tune with ``load_all_detection_checkpoint_vars: true``, as the OD
    API's TF1 trainer restores it (``restore_map(load_all_detection_checkpoint_vars=True)``
    then ``get_variables_available_in_checkpoint``): every model variable found in the
    checkpoint under its name with its shape is loaded, box predictor included; the others
    (e.g. a class head for another number of classes) stay as initialized and are reported."""
    reader = TFCheckpoint.open(checkpoint)
    variable_map = {key: target for key, target in _scoped_map(model, "full").items()
                    if target.layout != "ignored"}
    state = model.state_dict()
    keys = set(reader.keys())
    values: dict[str, Tensor] = {}
    for key, target in variable_map.items():
        if key not in keys or target.name not in state:
            continue
        value = to_torch_layout(reader.read(key), target.layout)
        if tuple(value.shape) == tuple(state[target.name].shape):
            values[target.name] = torch.from_numpy(value.copy())
    if not values:
        raise CheckpointError(f"{checkpoint} (detection, load_all_detection_checkpoint_vars): "
                              "no model variable found in the checkpoint with its shape")
    _copy_into(model, values)
    report = ImportReport(os.fspath(checkpoint), "detection (load_all_detection_checkpoint_vars)",
                          loaded=sorted(values))
    taken = {key for key, target in variable_map.items() if target.name in values}
    report.not_restored = sorted(key for key in keys if key not in taken and not key.startswith("_"))
    report.fresh = sorted(name for name in state if name not in values
                          and not name.endswith("num_batches_tracked"))
    return report


def _uncovered(model: nn.Module, variable_map: dict[str, Target]) -> list[str]:
    """Trainable parameters and batch-norm statistics of ``model`` that no entry fills
    (a frozen constant, e.g. the unit scale of a ``scale: false`` batch norm, needs none)."""
    targets = {target.name for target in variable_map.values()}
    names = [name for name, parameter in model.named_parameters() if parameter.requires_grad]
    names += [name for name, _ in model.named_buffers() if name.endswith(("running_mean", "running_var"))]
    return sorted(name for name in names if name not in targets)


def _copy_into(model: nn.Module, values: dict[str, Tensor]) -> None:
    state = model.state_dict()
    with torch.no_grad():
        for name, value in values.items():
            state[name].copy_(value)  # keeps each tensor's dtype, device and memory format
