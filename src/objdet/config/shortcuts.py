"""Short override keys, after the OD API's ``config_util.merge_external_params_with_configs``.

``objdet train --override learning_rate=0.01`` is easier than the full field path, and some
keys touch several fields at once (``label_map_path`` sets every input reader's). Keys:

========================== ==========================================================
``train_steps``            train_config.num_steps
``batch_size``             train_config.batch_size
``learning_rate``          the active schedule's base rate (constant learning_rate,
                           exponential initial_learning_rate, manual_step
                           initial_learning_rate with every schedule step scaled by the
                           same factor, cosine learning_rate_base with
                           warmup_learning_rate scaled by the same factor)
``momentum_optimizer_value`` the rms_prop / momentum optimizer's momentum
``decay_factor``           exponential_decay_learning_rate.decay_factor
``num_classes``            model.<ssd|faster_rcnn|center_net|...>.num_classes
``use_bfloat16``           train_config.use_bfloat16
``train_input_path``       train_input_reader.tf_record_input_reader.input_path (a,b,...)
``eval_input_path``        every eval_input_reader's tf_record_input_reader.input_path
``label_map_path``         train_input_reader and every eval_input_reader
``mask_type``              train_input_reader and every eval_input_reader
``max_number_of_boxes``    train_input_reader and every eval_input_reader
``train_shuffle``          train_input_reader.shuffle
``eval_shuffle``           every eval_input_reader's shuffle
``eval_num_epochs``        every eval_input_reader's num_epochs
``sample_1_of_n_eval_examples`` every eval_input_reader's sample_1_of_n_examples
``eval_with_moving_averages`` eval_config.use_moving_averages
``retain_original_images_in_eval`` eval_config.retain_original_images
========================== ==========================================================
"""

from __future__ import annotations

from collections.abc import Callable

from google.protobuf.message import Message

from objdet.config.field_paths import set_field
from objdet.errors import ConfigError

_BOTH_READERS = ("train_input_reader.{0}", "eval_input_reader[*].{0}")

# shortcut -> the field paths it sets, all to the same value
PATH_SHORTCUTS: dict[str, tuple[str, ...]] = {
    "train_steps": ("train_config.num_steps",),
    "batch_size": ("train_config.batch_size",),
    "use_bfloat16": ("train_config.use_bfloat16",),
    "train_input_path": ("train_input_reader.tf_record_input_reader.input_path",),
    "eval_input_path": ("eval_input_reader[*].tf_record_input_reader.input_path",),
    "label_map_path": tuple(path.format("label_map_path") for path in _BOTH_READERS),
    "mask_type": tuple(path.format("mask_type") for path in _BOTH_READERS),
    "max_number_of_boxes": tuple(path.format("max_number_of_boxes") for path in _BOTH_READERS),
    "train_shuffle": ("train_input_reader.shuffle",),
    "eval_shuffle": ("eval_input_reader[*].shuffle",),
    "eval_num_epochs": ("eval_input_reader[*].num_epochs",),
    "sample_1_of_n_eval_examples": ("eval_input_reader[*].sample_1_of_n_examples",),
    "eval_with_moving_averages": ("eval_config.use_moving_averages",),
    "retain_original_images_in_eval": ("eval_config.retain_original_images",),
}


def _learning_rate_message(config: Message, context: str) -> tuple[Message, str]:
    optimizer = config.train_config.optimizer
    kind = optimizer.WhichOneof("optimizer")
    if kind is None:
        raise ConfigError(f"{context}: train_config.optimizer has no optimizer set")
    learning_rate = getattr(optimizer, kind).learning_rate
    schedule = learning_rate.WhichOneof("learning_rate")
    if schedule is None:
        raise ConfigError(
            f"{context}: train_config.optimizer.{kind}.learning_rate has no schedule set"
        )
    return getattr(
        learning_rate, schedule
    ), f"train_config.optimizer.{kind}.learning_rate.{schedule}"


def _set_learning_rate(config: Message, value: str, context: str) -> None:
    schedule, _ = _learning_rate_message(config, context)
    name = schedule.DESCRIPTOR.name
    base_field = {
        "ConstantLearningRate": "learning_rate",
        "ExponentialDecayLearningRate": "initial_learning_rate",
        "ManualStepLearningRate": "initial_learning_rate",
        "CosineDecayLearningRate": "learning_rate_base",
    }[name]
    old_rate = getattr(schedule, base_field)
    set_field(schedule, base_field, value, context)
    new_rate = getattr(schedule, base_field)
    # Keep the schedule's shape: dependent rates move by the same factor (as the OD API does).
    scale = new_rate / old_rate if old_rate else 1.0
    if name == "ManualStepLearningRate":
        for step in schedule.schedule:
            step.learning_rate *= scale
    elif name == "CosineDecayLearningRate":
        schedule.warmup_learning_rate *= scale


def _set_momentum(config: Message, value: str, context: str) -> None:
    optimizer = config.train_config.optimizer
    kind = optimizer.WhichOneof("optimizer")
    if kind not in ("rms_prop_optimizer", "momentum_optimizer"):
        raise ConfigError(
            f"{context}: train_config.optimizer.{kind} has no momentum_optimizer_value"
        )
    set_field(getattr(optimizer, kind), "momentum_optimizer_value", value, context)


def _set_decay_factor(config: Message, value: str, context: str) -> None:
    schedule, path = _learning_rate_message(config, context)
    if schedule.DESCRIPTOR.name != "ExponentialDecayLearningRate":
        raise ConfigError(
            f"{context}: {path} has no decay_factor (not exponential_decay_learning_rate)"
        )
    set_field(schedule, "decay_factor", value, context)


def _set_num_classes(config: Message, value: str, context: str) -> None:
    architecture = config.model.WhichOneof("model")
    if architecture is None:
        raise ConfigError(f"{context}: model has no meta-architecture set")
    model = getattr(config.model, architecture)
    if "num_classes" not in model.DESCRIPTOR.fields_by_name:
        raise ConfigError(f"{context}: model.{architecture} has no num_classes field")
    set_field(model, "num_classes", value, context)


FUNCTION_SHORTCUTS: dict[str, Callable[[Message, str, str], None]] = {
    "learning_rate": _set_learning_rate,
    "momentum_optimizer_value": _set_momentum,
    "decay_factor": _set_decay_factor,
    "num_classes": _set_num_classes,
}

SHORTCUT_KEYS = frozenset(PATH_SHORTCUTS) | frozenset(FUNCTION_SHORTCUTS)


def apply_shortcut(config: Message, key: str, value: str, context: str) -> None:
    """Apply one shortcut key (see the module docstring) to ``config``."""
    if key in FUNCTION_SHORTCUTS:
        FUNCTION_SHORTCUTS[key](config, value, context)
        return
    for path in PATH_SHORTCUTS[key]:
        set_field(config, path, value, context)
