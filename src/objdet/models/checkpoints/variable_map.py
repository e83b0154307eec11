"""How one OD API variable becomes one objdet tensor.

A *variable map* is ``dict[str, Target]``: the TF2 checkpoint key of a variable (as
``tf.train.list_variables`` prints it, e.g.
``model/_box_predictor/_prediction_heads/box_encodings/0/_box_encoder_layers/0/kernel/.ATTRIBUTES/VARIABLE_VALUE``)
-> the objdet ``state_dict`` name and how its layout changes. Each module family that mirrors
an OD API object provides a function building its map (``objdet.models.checkpoints.maps``);
the importer joins them, converts, and reports unmatched and unused variables by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

# conv: TF [kh, kw, in, out] -> torch [out, in, kh, kw]
# depthwise: TF [kh, kw, channels, multiplier] -> torch [channels * multiplier, 1, kh, kw]
# dense: TF [in, out] -> torch [out, in]
# copy: same layout (biases, batch norm vectors, scalars)
# ignored: a variable the OD API model holds but that never reaches its outputs (e.g. the
#   classifier layers of a backbone tapped below its top); objdet builds no tensor for it,
#   and it need not be in the checkpoint.
Layout = Literal["conv", "depthwise", "dense", "copy", "ignored"]

VARIABLE_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"


@dataclass(frozen=True)
class Target:
    """Where a checkpoint variable goes: ``name`` in the model's state_dict, ``layout``."""

    name: str
    layout: Layout = "copy"


def to_torch_layout(value: np.ndarray, layout: Layout) -> np.ndarray:
    """A TF variable's array in the layout of its PyTorch parameter."""
    if layout == "conv":
        return np.ascontiguousarray(value.transpose(3, 2, 0, 1))
    if layout == "depthwise":
        height, width, channels, multiplier = value.shape
        return np.ascontiguousarray(
            value.transpose(2, 3, 0, 1).reshape(channels * multiplier, 1, height, width)
        )
    if layout == "dense":
        return np.ascontiguousarray(value.T)
    if layout in ("copy", "ignored"):
        return value
    raise ValueError(f"unknown layout {layout!r}")


def ignored_targets(tf_prefix: str) -> dict[str, Target]:
    """Every variable a Keras layer at ``tf_prefix`` may hold, marked ``ignored``."""
    names = ("kernel", "depthwise_kernel", "bias", "gamma", "beta", "moving_mean",
             "moving_variance")
    return {variable_key(f"{tf_prefix}/{name}"): Target("", "ignored") for name in names}


def variable_key(path: str) -> str:
    """``'model/_box_predictor/.../kernel'`` -> the full checkpoint key of that variable."""
    return path + VARIABLE_SUFFIX


def batch_norm_targets(tf_prefix: str, torch_prefix: str) -> dict[str, Target]:
    """A Keras ``BatchNormalization`` at ``tf_prefix`` -> ``nn.BatchNorm2d`` at ``torch_prefix``.

    Keras stores only the variables that exist: ``gamma`` is absent with ``scale=False``
    and ``beta`` with ``center=False``; callers drop what their layer lacks.
    """
    names = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean",
             "moving_variance": "running_var"}
    return {variable_key(f"{tf_prefix}/{tf_name}"): Target(f"{torch_prefix}.{torch_name}")
            for tf_name, torch_name in names.items()}


def conv_targets(tf_prefix: str, torch_prefix: str, *, depthwise: bool = False,
                 bias: bool = True) -> dict[str, Target]:
    """A Keras ``Conv2D``/``DepthwiseConv2D`` at ``tf_prefix`` -> ``nn.Conv2d`` at ``torch_prefix``.

    Keras names a depthwise kernel ``depthwise_kernel``."""
    kernel = "depthwise_kernel" if depthwise else "kernel"
    targets = {variable_key(f"{tf_prefix}/{kernel}"):
               Target(f"{torch_prefix}.weight", "depthwise" if depthwise else "conv")}
    if bias:
        targets[variable_key(f"{tf_prefix}/bias")] = Target(f"{torch_prefix}.bias")
    return targets
