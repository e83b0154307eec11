"""The contract every detection model keeps: what engine/, export/ and inference/ rely on.

``build_model`` checks it when a model is built (:func:`check_detection_model`), so code
outside ``models/`` calls these members instead of probing attributes.

- ``forward(images, targets)`` — train mode: named scalar losses; eval mode: per-image
  ``{"boxes" [D, 4] (x1, y1, x2, y2) input pixels, "scores" [D], "labels" [D] ids}``
  (DESIGN.md). ``images`` is a list of float ``[3, H, W]`` tensors in [0, 1].
- ``num_classes`` (label-map ids 1..num_classes), ``max_detections`` per image.
- ``resize_batch(images) -> ImageBatch`` — the canvas the network sees (resized, padded).
- ``predict(*graph inputs) -> dict`` of raw tensors; ``graph_inputs`` names its arguments
  (``preprocessed_inputs``: the canvas ``[B, 3, H_c, W_c]``; then ``true_image_shapes`` int32
  ``[B, 3]`` for a model that needs each image's window, as the OD API's predict takes it),
  ``graph_outputs`` the tensors an export serializes, in order (the traced network is
  ``predict``).
- ``postprocess(predictions, resized_sizes, original_sizes) -> list`` of detections.
- ``backbone() -> nn.Module`` — what a ``classification`` fine-tune checkpoint fills.
- ``tf2_variable_map() -> dict[str, Target]`` — OD API TF2 checkpoint key -> state_dict
  name and layout, for ``objdet import-checkpoint`` and TF2 fine-tune checkpoints;
  ``tf2_classification_map()`` the same for a TF2 classification (backbone) checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from torch import Tensor, nn

from objdet.models.checkpoints.variable_map import Target
from objdet.models.image_resizers import ImageBatch, ImageResizer

CONTRACT_MEMBERS = ("num_classes", "max_detections", "image_resizer", "graph_inputs", "graph_outputs",
                    "resize_batch", "predict", "postprocess", "backbone", "tf2_variable_map",
                    "tf2_classification_map")


@runtime_checkable
class DetectionModel(Protocol):
    """A detector as the rest of objdet sees it (see the module docstring)."""

    num_classes: int  # label-map ids 1..num_classes
    max_detections: int  # detections per image at most (post_processing)
    image_resizer: ImageResizer
    graph_inputs: tuple[str, ...]  # predict's arguments, by name
    graph_outputs: tuple[str, ...]

    def __call__(
        self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None
    ) -> dict[str, Tensor] | list[dict[str, Tensor]]: ...

    def resize_batch(self, images: list[Tensor]) -> ImageBatch: ...

    # (the canvas, then the other graph_inputs) -> raw tensors by name
    predict: Callable[..., dict[str, Tensor]]

    def postprocess(
        self,
        predictions: dict[str, Tensor],
        resized_sizes: list[tuple[int, int]],
        original_sizes: list[tuple[int, int]],
    ) -> list[dict[str, Tensor]]: ...

    def backbone(self) -> nn.Module: ...

    def tf2_variable_map(self) -> dict[str, Target]: ...

    def tf2_classification_map(self) -> dict[str, Target]: ...


def check_detection_model(model: nn.Module) -> DetectionModel:
    """``model`` as a :class:`DetectionModel`, or a TypeError naming what it lacks."""
    missing = [name for name in CONTRACT_MEMBERS if not hasattr(model, name)]
    if missing or not isinstance(model, DetectionModel):
        raise TypeError(
            f"{type(model).__name__} does not keep the detection model contract "
            f"(objdet.models.contract): it lacks {', '.join(missing) or 'a member'}"
        )
    return model


def as_detection_model(model: nn.Module) -> DetectionModel:
    """``model`` (possibly wrapped by DDP) as a :class:`DetectionModel`."""
    from torch.nn.parallel import DistributedDataParallel

    if isinstance(model, DistributedDataParallel):
        model = model.module
    return check_detection_model(model)
