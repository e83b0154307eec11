"""``model.pt2``: the detector's network serialized with ``torch.export``.

The graph runs without objdet's model code (``torch.export.load(path).module()``): it maps
the preprocessed canvas ``float32 [1, 3, H_c, W_c]`` in [0, 1] (images resized by the
config's image_resizer and pasted top-left, as ``objdet.models.image_resizers`` does) to

* ``box_encodings [1, A, 4]``: the box coder's encodings relative to each anchor;
* ``class_logits [1, A, K]``: per-class logits, column 0 background;
* ``anchors [A, 4]``: (x1, y1, x2, y2) canvas pixels.

Box decoding and non-max suppression stay outside the graph: their output sizes depend on
the data, which ``torch.export`` cannot keep static, and they are cheap. The Predictor runs
them with the model's own post-processing so exported and checkpoint detections agree.
Export needs a fixed canvas: ``fixed_shape_resizer``, or ``keep_aspect_ratio_resizer`` with
``pad_to_max_dimension: true``.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
from torch import Tensor, nn

from objdet.errors import ConfigError, ObjdetError
from objdet.export.signature import GRAPH_OUTPUTS
from objdet.models.contract import DetectionModel, as_detection_model

# The exported graph must reproduce the eager network this closely (float32 on the CPU).
GRAPH_TOLERANCE = 1e-4


class NetworkGraph(nn.Module):
    """``model.predict`` with a flat tuple output, the form ``torch.export`` serializes."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = check_exportable(model)

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        """``[1, 3, H_c, W_c]`` canvas -> the model's ``graph_outputs`` (SSD: box_encodings,
        class_logits, anchors)."""
        predictions = self.model.predict(images)
        return tuple(predictions[name] for name in self.model.graph_outputs)


def check_exportable(model: nn.Module) -> DetectionModel:
    """``model`` as a DetectionModel; a ``ConfigError`` if it does not keep the contract."""
    try:
        return as_detection_model(model)
    except TypeError as error:
        raise ConfigError(f"model: cannot be exported: {error}") from None


def fixed_canvas_size(model: DetectionModel) -> tuple[int, int]:
    """(height, width) of the canvas every image is resized onto, padding included."""
    from objdet.models.image_resizers import KeepAspectRatioResizer

    resizer = model.image_resizer
    if isinstance(resizer, KeepAspectRatioResizer) and not resizer.pad_to_max_dimension:
        raise ConfigError(
            "model.ssd.image_resizer.keep_aspect_ratio_resizer.pad_to_max_dimension: export "
            "needs a fixed input size; found false, expected true (or use fixed_shape_resizer)"
        )
    probe = model.resize_batch([torch.zeros(3, 8, 8)])
    return int(probe.images.shape[2]), int(probe.images.shape[3])


def export_network(model: nn.Module, canvas_size: tuple[int, int]) -> torch.export.ExportedProgram:
    """Trace ``model.predict`` (eval mode, CPU) on a ``[1, 3, *canvas_size]`` canvas, and
    check that the traced program reproduces it within ``GRAPH_TOLERANCE``."""
    network = NetworkGraph(model).eval()
    generator = torch.Generator().manual_seed(0)
    example = torch.rand(1, 3, *canvas_size, generator=generator)
    with torch.no_grad():
        try:
            program = torch.export.export(network, (example,))
        except Exception as trace_error:  # noqa: BLE001 - torch.export raises many types
            text = str(trace_error).strip()
            first_line = text.splitlines()[0] if text else ""
            raise ConfigError(
                f"export: the {type(network.model).__name__} network cannot be traced by "
                f"torch.export yet ({type(trace_error).__name__}: {first_line[:200]})"
            ) from None
        expected = network(example)
        found = program.module()(example)
    for name, want, got in zip(network.model.graph_outputs, expected, found, strict=True):
        error = float((want - got).abs().max()) if want.numel() else 0.0
        if want.shape != got.shape or error > GRAPH_TOLERANCE:
            raise ObjdetError(
                f"export: the exported graph's {name} differs from the model "
                f"(shape {tuple(got.shape)} vs {tuple(want.shape)}, max error {error:.3g})"
            )
    return program


GraphFunction = Callable[[Tensor], dict[str, Tensor]]


def load_graph(
    path: str | os.PathLike[str], output_names: tuple[str, ...] = GRAPH_OUTPUTS
) -> GraphFunction:
    """``model.pt2`` -> a function from the canvas to a dict of the named graph outputs
    (``output_names``: the signature's graph outputs, in order)."""
    try:
        module = torch.export.load(os.fspath(path)).module()
    except FileNotFoundError:
        raise ObjdetError(f"{path}: exported graph not found") from None
    except Exception as error:  # noqa: BLE001 - torch raises many types for a corrupt archive
        raise ObjdetError(f"{path}: cannot load the exported graph: {error}") from None

    def run(images: Tensor) -> dict[str, Tensor]:
        with torch.no_grad():
            return dict(zip(output_names, module(images), strict=True))

    return run
