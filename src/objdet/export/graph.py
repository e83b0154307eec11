"""``model.pt2``: the detector's network serialized with ``torch.export``.

The graph runs without objdet's model code (``torch.export.load(path).module()``): it maps
the preprocessed canvas ``float32 [1, 3, H_c, W_c]`` in [0, 1] (images resized by the
config's image_resizer and pasted top-left, as ``objdet.models.image_resizers`` does) — and,
for a model whose ``graph_inputs`` name it (Faster R-CNN: proposals are clipped to each
image's window between its two stages), ``true_image_shapes`` int32 ``[1, 3]`` (height,
width, channels of the resized image on the canvas, as the OD API's) — to the model's
``graph_outputs``; for an SSD:

* ``box_encodings [1, A, 4]``: the box coder's encodings relative to each anchor;
* ``class_logits [1, A, K]``: per-class logits, column 0 background;
* ``anchors [A, 4]``: (x1, y1, x2, y2) canvas pixels.

Box decoding and non-max suppression stay outside the graph: their output sizes depend on
the data, which ``torch.export`` cannot keep static, and they are cheap. The Predictor runs
them with the model's own post-processing so exported and checkpoint detections agree. So
does Mask R-CNN's mask head (it runs on the detections after NMS: the graph outputs the
``rpn_features_to_crop`` it crops from), and a CenterNet's keypoint decoding (the graph
outputs the keypoint heads).
Export needs a fixed canvas: ``fixed_shape_resizer``, or ``keep_aspect_ratio_resizer`` with
``pad_to_max_dimension: true``.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
from torch import Tensor, nn

from objdet.errors import ConfigError, ObjdetError
from objdet.export.signature import (
    GRAPH_INPUT,
    GRAPH_OUTPUTS,
    KEYPOINT_SCORES,
    KEYPOINTS,
    MASKS,
    TRUE_IMAGE_SHAPES,
)
from objdet.models.contract import DetectionModel, as_detection_model

# The exported graph must reproduce the eager network this closely (float32 on the CPU).
GRAPH_TOLERANCE = 1e-4


class NetworkGraph(nn.Module):
    """``model.predict`` with a flat tuple output, the form ``torch.export`` serializes."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = check_exportable(model)

    def forward(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        """The model's ``graph_inputs`` (the ``[1, 3, H_c, W_c]`` canvas, then
        ``true_image_shapes`` where named) -> its ``graph_outputs`` (SSD: box_encodings,
        class_logits, anchors)."""
        predictions = self.model.predict(*inputs)
        return tuple(predictions[name] for name in self.model.graph_outputs)


def graph_input_tensors(model: DetectionModel, canvas: Tensor,
                        resized_sizes: list[tuple[int, int]]) -> tuple[Tensor, ...]:
    """The tensors ``model.predict`` (and so ``model.pt2``) takes, in ``graph_inputs`` order,
    for ``canvas [B, 3, H_c, W_c]`` holding images resized to ``resized_sizes``."""
    tensors = {
        GRAPH_INPUT: canvas,
        TRUE_IMAGE_SHAPES: torch.tensor([[height, width, 3] for height, width in resized_sizes],
                                        dtype=torch.int32, device=canvas.device),
    }
    unknown = [name for name in model.graph_inputs if name not in tensors]
    if unknown:
        raise ConfigError(f"export: {type(model).__name__} graph input {unknown[0]!r} unknown; "
                          f"expected some of {', '.join(tensors)}")
    return tuple(tensors[name] for name in model.graph_inputs)


def check_exportable(model: nn.Module) -> DetectionModel:
    """``model`` as a DetectionModel; a ``ConfigError`` if it does not keep the contract."""
    try:
        return as_detection_model(model)
    except TypeError as error:
        raise ConfigError(f"model: cannot be exported: {error}") from None


def instance_outputs(model: nn.Module | DetectionModel) -> dict[str, tuple[int, ...]]:
    """The outputs an export of ``model`` has beyond the four box outputs, name -> shape of
    one detection's: Mask R-CNN's ``detection_masks`` (mask_height, mask_width), a
    CenterNet's with keypoint tasks ``detection_keypoints`` (K, 2) and
    ``detection_keypoint_scores`` (K,) (K: every task's keypoints)."""
    from objdet.models.meta_arch.center_net import CenterNet
    from objdet.models.meta_arch.faster_rcnn import FasterRCNN

    if isinstance(model, FasterRCNN) and model.mask_head is not None:
        return {MASKS: (model.mask_head.mask_height, model.mask_head.mask_width)}
    if isinstance(model, CenterNet) and model.keypoint_tasks:
        return {KEYPOINTS: (model.num_keypoints, 2), KEYPOINT_SCORES: (model.num_keypoints,)}
    return {}


# meta-architecture class -> its DetectionModel field (for messages naming a config field)
_CONFIG_FIELDS = {"SSD": "ssd", "FasterRCNN": "faster_rcnn", "CenterNet": "center_net"}


def fixed_canvas_size(model: DetectionModel) -> tuple[int, int]:
    """(height, width) of the canvas every image is resized onto, padding included."""
    from objdet.models.image_resizers import KeepAspectRatioResizer

    resizer = model.image_resizer
    if isinstance(resizer, KeepAspectRatioResizer) and not resizer.pad_to_max_dimension:
        raise ConfigError(
            f"model.{_CONFIG_FIELDS.get(type(model).__name__, type(model).__name__)}"
            ".image_resizer.keep_aspect_ratio_resizer.pad_to_max_dimension: export "
            "needs a fixed input size; found false, expected true (or use fixed_shape_resizer)"
        )
    probe = model.resize_batch([torch.zeros(3, 8, 8)])
    return int(probe.images.shape[2]), int(probe.images.shape[3])


def canvas_pad_values(model: DetectionModel, canvas_size: tuple[int, int]) -> list[float]:
    """The canvas value (in [0, 1] units) of each channel where no image is, read from the
    model's own ``resize_batch`` on a probe image smaller than the canvas (zeros when every
    image fills the canvas)."""
    height, width = canvas_size
    for probe in ((height // 2, width), (height, width // 2), (8, 16), (16, 8)):
        batch = model.resize_batch([torch.zeros(3, *probe)])
        resized_height, resized_width = batch.resized_sizes[0]
        if resized_height < height:
            return [float(value) for value in batch.images[0, :, height - 1, 0]]
        if resized_width < width:
            return [float(value) for value in batch.images[0, :, 0, width - 1]]
    return [0.0, 0.0, 0.0]


def export_network(model: nn.Module, canvas_size: tuple[int, int]) -> torch.export.ExportedProgram:
    """Trace ``model.predict`` (eval mode, CPU) on a ``[1, 3, *canvas_size]`` canvas, and
    check that the traced program reproduces it within ``GRAPH_TOLERANCE``."""
    network = NetworkGraph(model).eval()
    generator = torch.Generator().manual_seed(0)
    example = graph_input_tensors(network.model, torch.rand(1, 3, *canvas_size, generator=generator),
                                  [canvas_size])
    with torch.no_grad():
        try:
            program = torch.export.export(network, example)
        except Exception as trace_error:  # noqa: BLE001 - torch.export raises many types
            text = str(trace_error).strip()
            first_line = text.splitlines()[0] if text else ""
            raise ConfigError(
                f"export: the {type(network.model).__name__} network cannot be traced by "
                f"torch.export yet ({type(trace_error).__name__}: {first_line[:200]})"
            ) from None
        expected = network(*example)
        found = program.module()(*example)
    for name, want, got in zip(network.model.graph_outputs, expected, found, strict=True):
        error = float((want - got).abs().max()) if want.numel() else 0.0
        if want.shape != got.shape or error > GRAPH_TOLERANCE:
            raise ObjdetError(
                f"export: the exported graph's {name} differs from the model "
                f"(shape {tuple(got.shape)} vs {tuple(want.shape)}, max error {error:.3g})"
            )
    return program


GraphFunction = Callable[..., dict[str, Tensor]]  # graph inputs -> named graph outputs


def load_graph(
    path: str | os.PathLike[str], output_names: tuple[str, ...] = GRAPH_OUTPUTS
) -> GraphFunction:
    """``model.pt2`` -> a function from the graph inputs (the canvas, and
    ``true_image_shapes`` where the model takes it) to a dict of the named graph outputs
    (``output_names``: the signature's graph outputs, in order)."""
    try:
        module = torch.export.load(os.fspath(path)).module()
    except FileNotFoundError:
        raise ObjdetError(f"{path}: exported graph not found") from None
    except Exception as error:  # noqa: BLE001 - torch raises many types for a corrupt archive
        raise ObjdetError(f"{path}: cannot load the exported graph: {error}") from None

    def run(*inputs: Tensor) -> dict[str, Tensor]:
        with torch.no_grad():
            return dict(zip(output_names, module(*inputs), strict=True))

    return run
