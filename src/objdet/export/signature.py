"""The exported model's serving signature, in the OD API's terms (``signature.json``).

Inputs, by ``input_type`` (the OD API exporter's ``--input_type``):

* ``image_tensor``: ``uint8 [1, H, W, 3]`` RGB pixels (any H, W: written as -1);
* ``float_image_tensor``: ``float32 [1, H, W, 3]`` RGB pixel values in 0..255;
* ``encoded_image_string_tensor``: ``string [1]``, a JPEG or PNG file's bytes;
* ``tf_example``: ``string [1]``, a serialized tf.Example whose ``image/encoded`` is decoded.

Outputs (always batch 1, padded to ``max_detections`` rows, valid rows first):

* ``detection_boxes``: ``float32 [1, max, 4]`` normalized ``(ymin, xmin, ymax, xmax)``;
* ``detection_scores``: ``float32 [1, max]``, sorted descending;
* ``detection_classes``: ``float32 [1, max]``, label-map ids (float, as the OD API);
* ``num_detections``: ``float32 [1]``, how many rows are valid;

and, as the OD API's exporter gives them for the models that predict them:

* ``detection_masks`` (Mask R-CNN): ``float32 [1, max, mask_height, mask_width]``, each
  detection's mask probabilities over its box (the OD API's ``detection_masks``: paste them
  into the image with ``reframe_box_masks_to_image_masks``);
* ``detection_keypoints`` (CenterNet keypoint tasks): ``float32 [1, max, K, 2]`` normalized
  ``(y, x)``, K every task's keypoints (zeros for a detection of a class without a task);
* ``detection_keypoint_scores``: ``float32 [1, max, K]``.

Rows past ``num_detections`` are zeros in every output.

The ``onnx`` entry (when the export has ``model.onnx``) describes the whole detector as one
ONNX graph: ``input_tensor`` ``uint8 [B, H, W, 3]`` pixels (``float32`` for
float_image_tensor; the caller decodes encoded images and tf.Examples) to the outputs above with a batch dimension
``B`` (``num_detections [B]``); see ``objdet.export.onnx_graph``.

The ``program`` entry (when the export has ``detector.pt2``) describes the same whole detector
as a ``torch.export`` program, with the same input and outputs as the ``onnx`` entry; see
``objdet.export.program``.

The ``graph`` entry describes ``model.pt2``: the network alone, from the preprocessed canvas
(and, for Faster R-CNN, ``true_image_shapes``) to the raw outputs, e.g. an SSD's box encodings,
class logits and anchors (see ``objdet.export.graph``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from objdet.errors import ConfigError

SIGNATURE_NAME = "serving_default"
INPUT_NAME = "input_tensor"  # the OD API's TF2 exporter name for every input_type
INPUT_TYPES: dict[str, dict[str, Any]] = {
    "image_tensor": {"dtype": "uint8", "shape": [1, -1, -1, 3]},
    "float_image_tensor": {"dtype": "float32", "shape": [1, -1, -1, 3]},
    "encoded_image_string_tensor": {"dtype": "string", "shape": [1]},
    "tf_example": {"dtype": "string", "shape": [1]},
}
OUTPUT_NAMES = ("detection_boxes", "detection_scores", "detection_classes", "num_detections")
MASKS, KEYPOINTS, KEYPOINT_SCORES = (
    "detection_masks", "detection_keypoints", "detection_keypoint_scores")
INSTANCE_OUTPUTS = (MASKS, KEYPOINTS, KEYPOINT_SCORES)  # after OUTPUT_NAMES, where a model has them
GRAPH_INPUT = "preprocessed_inputs"
TRUE_IMAGE_SHAPES = "true_image_shapes"  # int32 [1, 3]: a Faster R-CNN graph's second input
GRAPH_OUTPUTS = ("box_encodings", "class_logits", "anchors")  # an SSD's graph outputs
_GRAPH_LAYOUTS = {"anchors": {"layout": "x1, y1, x2, y2 canvas pixels"}}
_GRAPH_INPUTS = {  # name -> its spec for a (height, width) canvas
    GRAPH_INPUT: lambda height, width: {"dtype": "float32", "shape": [1, 3, height, width],
                                        "range": [0.0, 1.0]},
    TRUE_IMAGE_SHAPES: lambda height, width: {"dtype": "int32", "shape": [1, 3],
                                              "layout": "height, width, channels"},
}


def check_input_type(input_type: str) -> str:
    """``input_type`` if it is one the exporter knows; a ``ConfigError`` listing them if not."""
    if input_type not in INPUT_TYPES:
        raise ConfigError(
            f"input_type: {input_type!r} is not supported; expected one of {', '.join(INPUT_TYPES)}"
        )
    return input_type


def onnx_input_dtype(input_type: str) -> str:
    """The dtype of model.onnx's (and detector.pt2's) pixels: float32 for float_image_tensor,
    else uint8."""
    return "float32" if input_type == "float_image_tensor" else "uint8"


def output_specs(max_detections: int,
                 instance_outputs: Mapping[str, tuple[int, ...]] | None = None,
                 ) -> dict[str, dict[str, Any]]:
    """dtype and shape of each OD API output for ``max_detections`` rows: the four box
    outputs, then ``instance_outputs`` (name -> shape of one detection's, e.g.
    ``{"detection_masks": (mask_height, mask_width)}``; names from ``INSTANCE_OUTPUTS``)."""
    unknown = sorted(set(instance_outputs or {}) - set(INSTANCE_OUTPUTS))
    if unknown:
        raise ConfigError(f"export outputs: {unknown} unknown; expected some of {INSTANCE_OUTPUTS}")
    specs: dict[str, dict[str, Any]] = {
        "detection_boxes": {"dtype": "float32", "shape": [1, max_detections, 4]},
        "detection_scores": {"dtype": "float32", "shape": [1, max_detections]},
        "detection_classes": {"dtype": "float32", "shape": [1, max_detections]},
        "num_detections": {"dtype": "float32", "shape": [1]},
    }
    for name, shape in (instance_outputs or {}).items():
        specs[name] = {"dtype": "float32", "shape": [1, max_detections, *shape]}
    return specs


def build_signature(
    input_type: str, max_detections: int, canvas_size: tuple[int, int],
    graph_outputs: dict[str, tuple[int, ...]], onnx_file: str | None = None,
    graph_inputs: tuple[str, ...] = (GRAPH_INPUT,), program_file: str | None = None,
    instance_outputs: Mapping[str, tuple[int, ...]] | None = None,
) -> dict[str, Any]:
    """The ``signature.json`` content for an export.

    Args:
        input_type: one of ``INPUT_TYPES``.
        max_detections: rows of every detection output (post_processing max_total_detections).
        canvas_size: (height, width) of the preprocessed input of ``model.pt2``.
        graph_outputs: name -> shape of each tensor ``model.pt2`` returns, in order (SSD:
            box_encodings ``[1, A, 4]``, class_logits ``[1, A, K]`` with background column 0,
            anchors ``[A, 4]`` x1, y1, x2, y2 canvas pixels).
        onnx_file, program_file: ``model.onnx`` / ``detector.pt2`` where the export has them
            (the whole detector, batched: ``[B, H, W, 3]`` pixels to ``[B, max, ...]``).
        instance_outputs: the outputs beyond the four box outputs (``output_specs``).
    """
    height, width = canvas_size
    signature: dict[str, Any] = {
        "signature_name": SIGNATURE_NAME,
        "input_type": check_input_type(input_type),
        "inputs": {INPUT_NAME: dict(INPUT_TYPES[input_type])},
        "outputs": output_specs(max_detections, instance_outputs),
        "graph": {
            "file": "model.pt2",
            "format": "torch.export",
            "inputs": {name: _GRAPH_INPUTS[name](height, width) for name in graph_inputs},
            "outputs": {
                name: {"dtype": "float32", "shape": list(shape), **_GRAPH_LAYOUTS.get(name, {})}
                for name, shape in graph_outputs.items()
            },
        },
    }
    batched = {
        "inputs": {INPUT_NAME: {"dtype": onnx_input_dtype(input_type), "shape": [-1, -1, -1, 3]}},
        "outputs": {name: {**spec, "shape": [-1, *spec["shape"][1:]]}
                    for name, spec in output_specs(max_detections, instance_outputs).items()},
    }
    if onnx_file is not None:
        signature["onnx"] = {"file": onnx_file, **batched}
    if program_file is not None:
        signature["program"] = {"file": program_file, "format": "torch.export", **batched}
    return signature


def shape_matches(spec_shape: list[int], shape: tuple[int, ...]) -> bool:
    """Whether ``shape`` fits ``spec_shape`` (-1 matches any size)."""
    return len(spec_shape) == len(shape) and all(
        expected in (-1, found) for expected, found in zip(spec_shape, shape)
    )
