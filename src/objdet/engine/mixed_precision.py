"""``train_config.use_bfloat16``: the network's forward pass in bfloat16, the rest in float32.

The OD API's TF2 trainer (on TPUs) sets Keras' ``mixed_bfloat16`` policy: its layers compute
in bfloat16 while their variables stay float32; ``eager_train_step`` casts the predictions
back to float32 before the losses. objdet does the same with ``torch.autocast``, applied to
the model's *layers* only: every direct child module holding parameters (an SSD's
feature_extractor and box_predictor) runs under bfloat16 autocast in train mode and hands
float32 tensors on. Anchors, target assignment and losses stay float32 (autocast over the
whole ``model(images, targets)`` would cast anchors and ground-truth boxes to bfloat16,
whose 8-bit mantissa moves a 600-pixel coordinate by up to 2 pixels). Parameters, gradients
and optimizer state are float32 throughout. Evaluation (eval mode) runs in float32, as
``objdet eval`` does. On a device without native bfloat16 (``check_bfloat16_supported``) the
trainer warns and trains in float32: the OD API honours the field on TPUs only.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from objdet.errors import ConfigError

FIELD = "train_config.use_bfloat16"
logger = logging.getLogger(__name__)


def check_bfloat16_supported(device: torch.device) -> None:
    """``ConfigError`` unless ``device`` computes in bfloat16 natively (CUDA with bf16
    support, or a CPU whose oneDNN has bf16 kernels: AVX512-BF16/AMX or AVX512)."""
    if device.type == "cuda":
        if not torch.cuda.is_bf16_supported(including_emulation=False):
            name = torch.cuda.get_device_name(device)
            raise ConfigError(
                f"{FIELD}: true, but {device} ({name}) has no native bfloat16 support "
                "(needs compute capability 8.0 or newer)"
            )
        return
    if device.type == "cpu":
        if not _cpu_has_bfloat16():
            raise ConfigError(
                f"{FIELD}: true, but this CPU has no bfloat16 kernels (oneDNN needs "
                "AVX512 or AMX)"
            )
        return
    raise ConfigError(f"{FIELD}: true is supported on cpu and cuda devices, not on {device}")


def bfloat16_available(device: torch.device) -> bool:
    """Whether ``train_config.use_bfloat16: true`` can run in bfloat16 on ``device``. Where it
    cannot, training goes on in float32 with a warning, as the OD API's trainer does off TPUs
    (it honours the field only with ``use_tpu``): the TF2 zoo's configs all set it."""
    try:
        check_bfloat16_supported(device)
    except ConfigError as error:
        logger.warning("%s; training in float32, as the OD API does off TPUs", error)
        return False
    return True


def _cpu_has_bfloat16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN
        return False


def autocast_layers(model: nn.Module, device_type: str) -> list[RemovableHandle]:
    """Run every direct child of ``model`` that holds parameters under bfloat16 autocast
    while the model trains; their float outputs are cast back to float32.

    Returns the hook handles (``handle.remove()`` undoes it).
    """
    handles = []
    for child in model.children():
        if next(child.parameters(), None) is None:
            continue
        contexts: list[torch.autocast] = []

        def enter(module: nn.Module, args: Any, contexts: list[torch.autocast] = contexts) -> None:
            context = torch.autocast(device_type, dtype=torch.bfloat16, enabled=module.training)
            context.__enter__()
            contexts.append(context)

        def leave(module: nn.Module, args: Any, output: Any,
                  contexts: list[torch.autocast] = contexts) -> Any:
            contexts.pop().__exit__(None, None, None)
            return _to_float32(output)

        handles.append(child.register_forward_pre_hook(enter))
        # always_call: leave autocast even when the forward raises
        handles.append(child.register_forward_hook(leave, always_call=True))
    return handles


def _to_float32(value: Any) -> Any:
    """bfloat16 tensors (also inside lists, tuples and dicts) -> float32."""
    if isinstance(value, torch.Tensor):
        return value.float() if value.dtype == torch.bfloat16 else value
    if isinstance(value, list):
        return [_to_float32(item) for item in value]
    if isinstance(value, tuple):
        return tuple(_to_float32(item) for item in value)
    if isinstance(value, dict):
        return {key: _to_float32(item) for key, item in value.items()}
    return value
