"""``model.onnx``: the whole detector as one ONNX graph, NMS included, for any batch size.

The graph needs no objdet and no torch to run (ONNX Runtime, or any runtime with opset 18)::

    input_tensor uint8 [B, H, W, 3]  (float32 0..255 for input_type float_image_tensor)
      -> /255, resize as the config's image_resizer (TF1's resize: output pixel i samples
         input position i * in / out, computed as objdet's eager resize computes it), pad
         onto the canvas with the model's pad value                  [B, 3, H_c, W_c]
      -> the network (exported by torch.onnx), box decoding, score conversion:
         boxes [B, A, 4] (x1, y1, x2, y2 canvas pixels), scores [B, A, C] (no background)
      -> one batched ``NonMaxSuppression`` (per image, per class: max_detections_per_class,
         iou_threshold, score_threshold; or, with use_class_agnostic_nms, per image over each
         row's best score, each survivor then reporting its max_classes_per_detection best
         classes above score_threshold), kept boxes clipped to the resized image and those
         left without area dropped (the OD API's clip window), the best max_total_detections
         of each image
      -> detection_boxes [B, max, 4] normalized (ymin, xmin, ymax, xmax),
         detection_scores [B, max], detection_classes [B, max] (label-map ids, float),
         num_detections [B] (float); rows past num_detections are zeros.

A CenterNet has no NMS: its peak extraction and box decoding (static shapes) are exported
with its network, after the same pre-processing, straight to the four outputs (and, with
keypoint tasks, its keypoint decoding to ``detection_keypoints [B, max, K, 2]`` and
``detection_keypoint_scores [B, max, K]``). A Faster R-CNN runs two exported stages joined by
a batched proposal NMS, then a batched per-class NMS, and a Mask R-CNN its mask head on the
detections to ``detection_masks [B, max, mask_h, mask_w]`` (``objdet.export.onnx_faster_rcnn``).

All images of one batch have one size (a ``[B, H, W, 3]`` tensor). Encoded images and
tf.Examples have no standard ONNX decoder: for those input types the caller decodes (the
Predictor does) and feeds pixels. ``export_onnx`` raises a ``ConfigError`` naming what a
model uses that the graph cannot express yet.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper
from torch import Tensor, nn

from objdet.errors import ConfigError, ObjdetError
from objdet.export.graph import canvas_pad_values, instance_outputs
from objdet.export.onnx_builder import RESIZED_SIZE, GraphPart
from objdet.export.onnx_nms import postprocessing_graph
from objdet.export.onnx_trace import run_onnx, trace_to_onnx
from objdet.export.program import center_net_outputs
from objdet.export.signature import onnx_input_dtype
from objdet.models.contract import DetectionModel, as_detection_model
from objdet.models.image_resizers import FixedShapeResizer, KeepAspectRatioResizer
from objdet.models.meta_arch.center_net import CenterNet
from objdet.models.meta_arch.faster_rcnn import FasterRCNN
from objdet.models.meta_arch.ssd import SSD
from objdet.models.postprocessing import convert_scores

INPUT_NAME = "input_tensor"
OUTPUT_NAMES = ("detection_boxes", "detection_scores", "detection_classes", "num_detections")
# Interpolations the graph resizes with: bilinear and nearest as TF1 (gathers, as
# image_resizers._legacy_resize), bicubic with ONNX Resize as F.interpolate ("area" has no
# ONNX counterpart).
_RESIZE_MODES: dict[str, dict[str, Any]] = {
    "bilinear": {}, "nearest": {},
    "bicubic": {"mode": "cubic", "coordinate_transformation_mode": "half_pixel",
                "cubic_coeff_a": -0.75},
}
# The network part must reproduce the eager model this closely (float32 on the CPU).
NETWORK_TOLERANCE = 1e-4


class DecodedNetwork(nn.Module):
    """An SSD's ``predict`` then box decoding and score conversion, in the form torch.onnx
    exports: canvas ``[B, 3, H_c, W_c]`` -> boxes ``[B, A, 4]`` (x1, y1, x2, y2 canvas
    pixels), scores ``[B, A, C]`` (converted; background column dropped)."""

    def __init__(self, model: SSD) -> None:
        super().__init__()
        self.model = model

    def forward(self, canvas: Tensor) -> tuple[Tensor, Tensor]:
        predictions = self.model.predict(canvas)
        boxes = self.model.box_coder.decode(predictions["box_encodings"], predictions["anchors"][None])
        nms = self.model.postprocessor
        scores = convert_scores(predictions["class_logits"], nms.score_converter, nms.logit_scale)
        if nms.background_column:
            scores = scores[..., 1:]
        return boxes, scores


class CenterNetDetections(nn.Module):
    """A CenterNet's ``predict`` and its whole post-processing (peaks, boxes, keypoints; no
    NMS), in the form torch.onnx exports: canvas ``[B, 3, H_c, W_c]`` and ``resized_size``
    int64 ``[2]`` -> the four detection outputs, then with keypoint tasks
    ``detection_keypoints [B, k, K, 2]`` (normalized y, x) and ``detection_keypoint_scores
    [B, k, K]`` (rows scoring 0 or less zeroed, as the OD API counts ``num_detections``)."""

    def __init__(self, model: CenterNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, canvas: Tensor, resized_size: Tensor) -> tuple[Tensor, ...]:
        sizes = resized_size[None].expand(canvas.shape[0], 2)  # [B, 2]
        return center_net_outputs(self.model, self.model.predict(canvas), sizes)  # as detector.pt2


def export_onnx(model: nn.Module, canvas_size: tuple[int, int], input_type: str = "image_tensor") -> onnx.ModelProto:
    """The whole detector (see the module docstring) as an ONNX model; its network part is
    checked with ONNX Runtime against the eager model on a random canvas. ``input_type``
    float_image_tensor takes ``float32`` 0..255 pixels, every other one ``uint8``."""
    supported = _supported_model(model)
    detector = as_detection_model(supported)
    extra_outputs = instance_outputs(supported)  # masks / keypoints: name -> per-detection shape
    pre = _preprocessing(detector, canvas_size)
    if isinstance(supported, CenterNet):
        network = _export_center_net(supported, canvas_size)
        post = GraphPart("postprocess")  # inside the exported module
    elif isinstance(supported, FasterRCNN):
        from objdet.export.onnx_faster_rcnn import faster_rcnn_graph

        network, post = faster_rcnn_graph(supported, canvas_size)
    else:
        network = _export_network(supported, canvas_size)
        post = postprocessing_graph(supported.postprocessor)
    graph = helper.make_graph(
        pre.nodes + list(network.graph.node) + post.nodes,
        "objdet_detector",
        [helper.make_tensor_value_info(
            INPUT_NAME, TensorProto.FLOAT if onnx_input_dtype(input_type) == "float32" else TensorProto.UINT8,
            ["batch", "height", "width", 3])],
        [_output_info(name, detector.max_detections, extra_outputs)
         for name in (*OUTPUT_NAMES, *extra_outputs)],
        initializer=pre.initializers + list(network.graph.initializer) + post.initializers,
    )
    merged = helper.make_model(graph, opset_imports=list(network.opset_import),
                               producer_name="objdet")
    merged.ir_version = network.ir_version
    onnx.checker.check_model(merged)
    return merged


def onnx_unsupported_reason(model: nn.Module) -> str | None:
    """Why ``model`` has no ONNX graph yet (None when it has one)."""
    if not isinstance(model, SSD | CenterNet | FasterRCNN):
        return (f"the {type(model).__name__} meta-architecture has no ONNX graph yet (SSD, "
                "EfficientDet, CenterNet and Faster R-CNN do); export its torch program (pt2) "
                "instead")
    if model.image_resizer.interpolation not in _RESIZE_MODES:
        return (f"image_resizer interpolation {model.image_resizer.interpolation!r} has no ONNX "
                f"Resize mode; supported: {', '.join(_RESIZE_MODES)}")
    return None


def _supported_model(model: nn.Module) -> SSD | CenterNet | FasterRCNN:
    """``model`` as one whose graph ONNX can express; else a ConfigError saying why."""
    reason = onnx_unsupported_reason(model)
    if reason is not None:
        raise ConfigError(f"ONNX export: {reason}")
    assert isinstance(model, SSD | CenterNet | FasterRCNN)
    return model


def _export_network(model: SSD, canvas_size: tuple[int, int]) -> onnx.ModelProto:
    """``DecodedNetwork`` through torch.onnx (dynamic batch), checked with ONNX Runtime."""
    network = DecodedNetwork(model).eval()
    generator = torch.Generator().manual_seed(0)
    example = torch.rand(2, 3, *canvas_size, generator=generator)
    proto = trace_to_onnx(network, (example,), ["canvas"], ["decoded_boxes", "class_scores"])
    with torch.no_grad():
        expected = network(example)
    found = run_onnx(proto, {"canvas": example.numpy()})
    for name, want, got in zip(("decoded boxes", "class scores"), expected, found, strict=True):
        scale = max(1.0, float(want.abs().max()))
        error = float(np.abs(want.numpy() - got).max()) / scale if want.numel() else 0.0
        if tuple(want.shape) != got.shape or error > NETWORK_TOLERANCE:
            raise ObjdetError(f"ONNX export: the graph's {name} differ from the model's "
                              f"(shape {got.shape} vs {tuple(want.shape)}, relative error {error:.3g})")
    return proto


def _export_center_net(model: CenterNet, canvas_size: tuple[int, int]) -> onnx.ModelProto:
    """``CenterNetDetections`` through torch.onnx (dynamic batch), checked with ONNX Runtime
    against the eager module on a random canvas whose resized image is smaller than it."""
    network = CenterNetDetections(model).eval()
    generator = torch.Generator().manual_seed(0)
    example = torch.rand(2, 3, *canvas_size, generator=generator)
    resized = torch.tensor([canvas_size[0] * 3 // 4, canvas_size[1]], dtype=torch.int64)
    output_names = [*OUTPUT_NAMES, *instance_outputs(model)]
    proto = trace_to_onnx(network, (example, resized), ["canvas", RESIZED_SIZE],
                          output_names, batched=(True, False))
    with torch.no_grad():
        expected = network(example, resized)
    found = run_onnx(proto, {"canvas": example.numpy(), RESIZED_SIZE: resized.numpy()})
    # Rows whose score ties another's may come in another order (or another of the tied
    # peaks may be kept): boxes and classes are compared on the rows of distinct scores, the
    # scores (sorted in both) and the counts on every row.
    scores = expected[1].numpy()  # [B, k], descending
    edge = np.ones((scores.shape[0], 1), bool)
    gaps = np.abs(np.diff(scores, axis=1)) > NETWORK_TOLERANCE  # [B, k - 1]
    distinct = np.concatenate([edge, gaps], axis=1) & np.concatenate([gaps, edge], axis=1)
    for name, want, got in zip(output_names, expected, found, strict=True):
        want_values = want.numpy()
        if tuple(want.shape) != got.shape:
            raise ObjdetError(f"ONNX export: the graph's {name} have shape {got.shape}, the "
                              f"model's {tuple(want.shape)}")
        if name not in ("detection_scores", "num_detections"):
            want_values, got = want_values[distinct], got[distinct]
        error = float(np.abs(want_values - got).max()) if want_values.size else 0.0
        if error > NETWORK_TOLERANCE:
            raise ObjdetError(f"ONNX export: the graph's {name} differ from the model's "
                              f"(max error {error:.3g})")
    return proto


def _output_info(name: str, max_detections: int,
                 extra_outputs: dict[str, tuple[int, ...]]) -> onnx.ValueInfoProto:
    """A graph output's type: ``[batch, max_detections, ...]`` float (``num_detections``:
    ``[batch]``); ``extra_outputs``: masks / keypoints name -> one detection's shape."""
    shapes: dict[str, list[str | int | None]] = {
        "detection_boxes": ["batch", max_detections, 4], "num_detections": ["batch"],
        **{output: ["batch", max_detections, *shape] for output, shape in extra_outputs.items()}}
    return helper.make_tensor_value_info(name, TensorProto.FLOAT,
                                         shapes.get(name, ["batch", max_detections]))


def _preprocessing(model: DetectionModel, canvas_size: tuple[int, int]) -> GraphPart:
    """``input_tensor [B, H, W, 3]`` -> ``canvas [B, 3, H_c, W_c]`` in [0, 1] plus padding."""
    g = GraphPart("preprocess")
    resizer = model.image_resizer
    pixels = g.op("Transpose", [g.op("Cast", [INPUT_NAME], to=TensorProto.FLOAT)], perm=[0, 3, 1, 2])
    images = g.op("Div", [pixels, g.const(255.0)])  # [B, 3, H, W] in [0, 1]
    shape = g.op("Shape", [INPUT_NAME])  # [B, H, W, 3]
    batch = g.op("Slice", [shape, g.const([0], np.int64), g.const([1], np.int64)])
    height_width = g.op("Slice", [shape, g.const([1], np.int64), g.const([3], np.int64)])
    resized = g.name("Identity", [_resized_size(g, resizer, height_width)], RESIZED_SIZE)
    # an image already at its resized size is not resampled (the eager resize skips it too)
    branch = GraphPart("preprocess/resize")
    if resizer.interpolation == "bicubic":
        sizes = branch.op("Concat", [batch, branch.const([3], np.int64), resized], axis=0)
        resampled = branch.op("Resize", [images, "", "", sizes], **_RESIZE_MODES["bicubic"])
    else:
        resampled = _legacy_resize(branch, images, height_width, resized, resizer.interpolation)
    same_size = g.op("ReduceMin", [g.op("Cast", [g.op("Equal", [height_width, resized])],
                                        to=TensorProto.INT64)], keepdims=0)
    images = g.op("If", [g.op("Cast", [same_size], to=TensorProto.BOOL)],
                  then_branch=_subgraph("keep", [], images),
                  else_branch=_subgraph("resize", branch.nodes, resampled, branch.initializers))
    canvas_height, canvas_width = canvas_size
    missing = g.op("Sub", [g.const([canvas_height, canvas_width], np.int64), resized])  # [2]
    pads = g.op("Concat", [g.const([0, 0, 0, 0, 0, 0], np.int64), missing], axis=0)
    channels = g.op("Split", [images], outputs=3, axis=1, num_outputs=3)
    padded = [g.op("Pad", [channel, pads, g.const(value)], mode="constant")
              for channel, value in zip(channels, canvas_pad_values(model, canvas_size))]
    g.name("Concat", padded, "canvas", axis=1)
    return g


def _subgraph(name: str, nodes: list[onnx.NodeProto], output: str,
              initializers: list[onnx.TensorProto] | None = None) -> onnx.GraphProto:
    """An ``If`` branch returning ``output`` (outer-scope names are visible inside)."""
    result = f"{name}_output"
    return helper.make_graph(
        [*nodes, helper.make_node("Identity", [output], [result])], name, [],
        [helper.make_tensor_value_info(result, TensorProto.FLOAT, [None, 3, None, None])],
        initializer=initializers or [])


def _legacy_resize(g: GraphPart, images: str, height_width: str, resized: str, interpolation: str) -> str:
    """TF1's ``resize_bilinear`` / ``resize_nearest_neighbor`` as ``image_resizers.
    _legacy_resize`` computes them (the same float32 operations, so the same values): output
    pixel ``i`` samples input position ``i * (in / out)``; rows, then columns."""
    for axis, index in ((2, 0), (3, 1)):  # [B, 3, H, W]: rows (axis 2), then columns (axis 3)
        start, stop = g.const([index], np.int64), g.const([index + 1], np.int64)
        in_size = g.op("Slice", [height_width, start, stop])  # int64 [1]
        out_size = g.op("Slice", [resized, start, stop])
        scale = g.op("Cast", [g.op("Div", [g.op("Cast", [in_size], to=TensorProto.DOUBLE),
                                           g.op("Cast", [out_size], to=TensorProto.DOUBLE)])],
                     to=TensorProto.FLOAT)  # in / out, rounded once to float32
        steps = g.op("Range", [g.const(0.0), g.op("Cast", [g.op("Squeeze", [out_size])], to=TensorProto.FLOAT),
                               g.const(1.0)])
        positions = g.op("Mul", [steps, scale])  # [out] float32
        last = g.op("Sub", [in_size, g.const([1], np.int64)])
        first_index = g.op("Floor", [positions])
        lower = g.op("Min", [g.op("Cast", [first_index], to=TensorProto.INT64), last])
        lower_values = g.op("Gather", [images, lower], axis=axis)
        if interpolation == "nearest":
            images = lower_values
            continue
        upper = g.op("Min", [g.op("Add", [lower, g.const([1], np.int64)]), last])
        upper_values = g.op("Gather", [images, upper], axis=axis)
        weight = g.op("Sub", [positions, first_index])  # [out]
        if axis == 2:
            weight = g.op("Unsqueeze", [weight, g.const([1], np.int64)])  # [out, 1]
        images = g.op("Add", [lower_values, g.op("Mul", [g.op("Sub", [upper_values, lower_values]), weight])])
    return images


def _resized_size(g: GraphPart, resizer: Any, height_width: str) -> str:
    """int64 ``[2]`` (height, width) an image of ``height_width`` is resized to."""
    if isinstance(resizer, FixedShapeResizer):
        return g.const([resizer.height, resizer.width], np.int64)
    if not isinstance(resizer, KeepAspectRatioResizer):
        raise ConfigError(f"ONNX export: image resizer {type(resizer).__name__} is not supported")
    # KeepAspectRatioResizer.output_size in float64, rounding half to even as Python's round
    size = g.op("Cast", [height_width], to=TensorProto.DOUBLE)
    shorter = g.op("ReduceMin", [size], keepdims=1)
    longer = g.op("ReduceMax", [size], keepdims=1)
    first = g.op("Round", [g.op("Mul", [size, g.op("Div", [g.const([resizer.min_dimension], np.float64), shorter])])])
    second = g.op("Round", [g.op("Mul", [size, g.op("Div", [g.const([resizer.max_dimension], np.float64), longer])])])
    too_large = g.op("Greater", [g.op("ReduceMax", [first], keepdims=1),
                                 g.const([resizer.max_dimension], np.float64)])
    return g.op("Cast", [g.op("Where", [too_large, second, first])], to=TensorProto.INT64)
