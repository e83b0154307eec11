"""``train_config`` -> :class:`TrainSettings`: the one place that reads a ``TrainConfig``.

Every field of ``protos/train.proto``'s ``TrainConfig`` is in exactly one of three sets, so
that no field is ignored silently (DESIGN.md; ``tests/engine/test_train_config.py``
enumerates the proto's fields against them):

- ``IMPLEMENTED``: read into :class:`TrainSettings` and honoured by the trainer;
- ``NO_EFFECT``: accepted, because the OD API's TF2 trainer (model_lib_v2.py, inputs.py)
  does not use them either (TF1 queue and replica knobs, TF1 summaries) or because PyTorch
  makes them moot. A non-default value is logged once, with the reason;
- ``UNSUPPORTED``: a non-default value fails at start with a ``ConfigError`` naming
  ``train_config.<field>``, its value and what is supported.

A field in none of the sets (a field added to the proto later) fails like an unsupported one
when set to a non-default value.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf.descriptor import FieldDescriptor

from objdet.errors import ConfigError
from objdet.protos import optimizer_pb2, preprocessor_pb2, train_pb2

logger = logging.getLogger(__name__)

IMPLEMENTED = frozenset({
    "batch_size",
    "data_augmentation_options",  # data/augment_builder.py
    "optimizer",  # engine/optim.py
    "gradient_clipping_by_norm",
    "fine_tune_checkpoint",
    "fine_tune_checkpoint_type",
    "from_detection_checkpoint",  # the OD API's deprecated spelling of type "detection"
    "num_steps",
    "freeze_variables",
    "update_trainable_variables",
    "bias_grad_multiplier",  # engine/gradients.py
    "add_regularization_loss",  # false: no weight decay (models/regularization.py)
    "use_bfloat16",  # engine/mixed_precision.py
    "load_all_detection_checkpoint_vars",  # engine/fine_tune.py (TF1's meaning)
})

NO_EFFECT = {
    "sync_replicas": "TF1's SyncReplicasOptimizer; objdet's DDP always averages gradients "
    "synchronously",
    "replicas_to_aggregate": "TF1's SyncReplicasOptimizer; objdet's DDP averages over all ranks",
    "startup_delay_steps": "TF1's delayed start of workers; the OD API's TF2 trainer ignores it",
    "keep_checkpoint_every_n_hours": "TF1's Saver; the OD API's TF2 trainer ignores it "
    "(objdet keeps the newest --keep_checkpoints plus the best)",
    "batch_queue_capacity": "a TF1 input queue; objdet's DataLoader has no such queue",
    "num_batch_queue_threads": "a TF1 input queue; objdet's loader uses --num_workers",
    "prefetch_queue_capacity": "a TF1 input queue; objdet's DataLoader has no such queue",
    "summarize_gradients": "TF1 gradient summaries; the OD API's TF2 trainer ignores it",
    "max_number_of_boxes": "deprecated in the OD API; objdet reads "
    "train_input_reader.max_number_of_boxes",
    "retain_original_images": "the original images only feed TF image summaries; training "
    "does not use them",
    "run_fine_tune_checkpoint_dummy_computation": "TF2 builds variables lazily and needs a "
    "dummy forward pass before restoring; PyTorch modules hold their weights from the start",
    "fine_tune_checkpoint_version": "selects TF's V1/V2 checkpoint reader; objdet reads its "
    "own checkpoints and the OD API's TF2 (V2, object-based) ones by their files",
    "unpad_groundtruth_tensors": "false keeps TPU-style padded ground-truth rows; the OD API "
    "gives them weight 0, so they leave its losses out (each only takes one anchor out of the "
    "negatives); objdet never pads ground truth, which every TF2 zoo config's false also gives",
}


@dataclass(frozen=True)
class Unsupported:
    supported: object  # the one value objdet accepts
    reason: str  # why another value is not


UNSUPPORTED = {
    "merge_multiple_label_boxes": Unsupported(
        False,
        "objdet's targets carry one class per box and its losses take one-hot classes, "
        "so merged multi-label (k-hot) boxes cannot be trained faithfully",
    ),
    "use_multiclass_scores": Unsupported(
        False,
        "objdet's decoder does not read image/object/class/multiclass_scores and its "
        "losses take one-hot classes",
    ),
}

FINE_TUNE_DETECTION = "detection"
FINE_TUNE_CLASSIFICATION = "classification"


@dataclass(frozen=True)
class FineTune:
    """Initial weights: ``checkpoint`` read as ``checkpoint_type`` (engine/fine_tune.py)."""

    checkpoint: str
    checkpoint_type: str
    # ``detection`` only: every variable found with its shape, not the feature extractor alone
    load_all_detection_checkpoint_vars: bool = False


@dataclass(frozen=True)
class TrainSettings:
    """What the trainer takes from a ``TrainConfig``, field by field."""

    batch_size: int  # the global batch, split over ranks
    num_steps: int  # 0: not set (then --num_train_steps must be given)
    optimizer: optimizer_pb2.Optimizer  # built by engine/optim.py
    augmentation_steps: tuple[preprocessor_pb2.PreprocessingStep, ...]
    gradient_clipping_by_norm: float  # 0: no clipping
    fine_tune: FineTune | None
    freeze_variables: tuple[str, ...]
    update_trainable_variables: tuple[str, ...]
    bias_grad_multiplier: float  # 0: bias gradients unchanged
    add_regularization_loss: bool  # false: no L2 weight decay anywhere
    use_bfloat16: bool  # bfloat16 autocast of the network's forward pass


def build_train_settings(train_config: train_pb2.TrainConfig) -> TrainSettings:
    """Check every set field of ``train_config`` against the three sets; read it."""
    _check_fields(train_config)
    fine_tune = None
    if train_config.fine_tune_checkpoint:
        checkpoint_type = train_config.fine_tune_checkpoint_type or (
            FINE_TUNE_DETECTION if train_config.from_detection_checkpoint else FINE_TUNE_CLASSIFICATION
        )
        load_all = train_config.load_all_detection_checkpoint_vars
        if load_all and checkpoint_type != FINE_TUNE_DETECTION:
            logger.info("train_config.load_all_detection_checkpoint_vars has no effect with "
                        "fine_tune_checkpoint_type %r (it widens a detection fine-tune only)",
                        checkpoint_type)
        fine_tune = FineTune(train_config.fine_tune_checkpoint, checkpoint_type,
                             load_all and checkpoint_type == FINE_TUNE_DETECTION)
    if train_config.gradient_clipping_by_norm < 0:
        raise ConfigError(
            f"train_config.gradient_clipping_by_norm: {train_config.gradient_clipping_by_norm} "
            "is negative; expected a norm > 0, or 0 for no clipping"
        )
    return TrainSettings(
        batch_size=train_config.batch_size,
        num_steps=train_config.num_steps,
        optimizer=train_config.optimizer,
        augmentation_steps=tuple(train_config.data_augmentation_options),
        gradient_clipping_by_norm=train_config.gradient_clipping_by_norm,
        fine_tune=fine_tune,
        freeze_variables=tuple(train_config.freeze_variables),
        update_trainable_variables=tuple(train_config.update_trainable_variables),
        bias_grad_multiplier=train_config.bias_grad_multiplier,
        add_regularization_loss=train_config.add_regularization_loss,
        use_bfloat16=train_config.use_bfloat16,
    )


def _check_fields(train_config: train_pb2.TrainConfig) -> None:
    for field, value in train_config.ListFields():
        if field.name in IMPLEMENTED or _is_default(field, value):
            continue
        if field.name in NO_EFFECT:
            logger.info("train_config.%s: %s has no effect in objdet: %s",
                        field.name, _shown(value, field), NO_EFFECT[field.name])
            continue
        rule = UNSUPPORTED.get(field.name, Unsupported(field.default_value, "not implemented"))
        raise ConfigError(
            f"train_config.{field.name}: {_shown(value, field)} is not supported by objdet "
            f"(supported: {_shown(rule.supported, field)}): {rule.reason}"
        )


def _is_default(field: FieldDescriptor, value: Any) -> bool:
    if field.is_repeated or field.type == FieldDescriptor.TYPE_MESSAGE:
        return False
    return bool(value == field.default_value)


def _shown(value: object, field: FieldDescriptor) -> str:
    """``value`` as written in a pipeline.config (enum names, lower-case booleans)."""
    if field.type == FieldDescriptor.TYPE_ENUM and isinstance(value, int):
        return field.enum_type.values_by_number[value].name  # type: ignore[index]
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, Sequence) and not isinstance(value, str):
        return repr(list(value))
    return repr(value)
