"""A Faster R-CNN in ``model.onnx``: both stages and both NMS steps, for any batch size.

Between the canvas (``objdet.export.onnx_graph``'s pre-processing) and the four detection
outputs the graph runs::

    first stage (torch.onnx)   canvas [B, 3, H_c, W_c] -> rpn_features [B, C, h, w],
                               rpn_boxes [B, A, 4] (decoded, x1 y1 x2 y2 canvas pixels),
                               objectness [B, A] (probability)
    proposals (built here)     one batched NonMaxSuppression (a single class), the first
                               max_proposals survivors of each image clipped to the resized
                               image, those left without area dropped, zero-padded:
                               proposals [B, P, 4], num_proposals int64 [B]
    second stage (torch.onnx)  rpn_features, proposals -> second_stage_boxes [B, P, C', 4]
                               (decoded against the proposals; C' is 1 when the box is shared
                               across classes), second_stage_scores [B, P, C] (converted,
                               background dropped)
    detections (built here)    one batched NonMaxSuppression over (image, class) pairs: the
                               boxes of class c of image b are "batch" b * C + c, rows past
                               num_proposals score below any threshold; then the clip window,
                               order and caps of ``onnx_nms.write_detections``
    masks (torch.onnx; Mask    rpn_features, detection_boxes, detection_classes,
    R-CNN)                     num_detections -> detection_masks [B, max, mask_h, mask_w]:
                               each detection cropped from the map again, the extractor's
                               second stage and the mask head, its class's mask (sigmoid);
                               zero rows past num_detections

as ``FasterRCNN.predict`` and ``SecondStageNonMaxSuppression`` compute them eagerly. Neither
NMS is a per-image loop, so the batch dimension stays dynamic.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper
from torch import Tensor, nn

from objdet.errors import ObjdetError
from objdet.export.onnx_builder import GraphPart
from objdet.export.onnx_graph import NETWORK_TOLERANCE
from objdet.export.onnx_nms import clip_to_window, rank_within_image, write_detections
from objdet.export.onnx_trace import run_onnx, trace_to_onnx
from objdet.models.meta_arch.faster_rcnn import FasterRCNN, true_image_shapes
from objdet.models.meta_arch.faster_rcnn_masks import select_class_masks
from objdet.models.postprocessing import convert_scores

# Joints between the parts (graph-wide names).
FEATURES, RPN_BOXES, OBJECTNESS = "rpn_features", "rpn_boxes", "objectness"
PROPOSALS, NUM_PROPOSALS = "proposals", "num_proposals"
BOXES, SCORES = "second_stage_boxes", "second_stage_scores"
# A score no NMS threshold keeps (rows past num_proposals).
_NEVER = float(np.finfo(np.float32).min)


class FirstStage(nn.Module):
    """Canvas ``[B, 3, H_c, W_c]`` -> ``rpn_features``, ``rpn_boxes [B, A, 4]`` decoded
    against the (clipped) anchors, ``objectness [B, A]`` probabilities."""

    def __init__(self, model: FasterRCNN) -> None:
        super().__init__()
        self.model = model

    def forward(self, canvas: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        first = self.model.predict_first_stage(canvas)
        boxes = self.model.box_coder.decode(first["rpn_box_encodings"], first["anchors"][None])
        return first["features"], boxes, first["rpn_objectness"].softmax(dim=-1)[..., 1]


class SecondStage(nn.Module):
    """``rpn_features``, ``proposals [B, P, 4]`` canvas pixels -> boxes ``[B, P, C', 4]``
    (x1, y1, x2, y2 canvas pixels), scores ``[B, P, C]`` (converted, background dropped)."""

    def __init__(self, model: FasterRCNN, canvas_size: tuple[int, int]) -> None:
        super().__init__()
        self.model = model
        self.canvas_size = canvas_size

    def forward(self, features: Tensor, proposals: Tensor) -> tuple[Tensor, Tensor]:
        refined, logits = self.model.predict_second_stage(features, proposals, self.canvas_size)
        boxes = self.model.box_coder.decode(refined, proposals[:, :, None, :])
        nms = self.model.postprocessor
        return boxes, convert_scores(logits, nms.score_converter, nms.logit_scale)[..., 1:]


class MaskStage(nn.Module):
    """Mask R-CNN's third stage on the detections, as ``FasterRCNN.predict_masks`` runs it
    per image: ``rpn_features``, ``detection_boxes [B, D, 4]`` (ymin, xmin, ymax, xmax as
    fractions of each image's window: the OD API crops them so), ``detection_classes [B, D]``
    (label-map ids, float), ``num_detections [B]`` -> ``detection_masks [B, D, mask_height,
    mask_width]`` probabilities over each box, zero past ``num_detections``."""

    def __init__(self, model: FasterRCNN, canvas_size: tuple[int, int]) -> None:
        super().__init__()
        self.model = model
        self.canvas_size = canvas_size

    def forward(self, features: Tensor, boxes: Tensor, classes: Tensor, counts: Tensor,
                ) -> tuple[Tensor]:
        assert self.model.mask_head is not None
        batch, rows = boxes.shape[0], boxes.shape[1]
        corners = boxes[..., [1, 0, 3, 2]]  # [B, D, 4] (x1, y1, x2, y2)
        crops = self.model.box_classifier_features(features, corners, self.canvas_size)
        logits = self.model.mask_head(crops)  # [B*D, num_masks, mask_height, mask_width]
        # padded rows (class 0) take the first class's mask, zeroed below
        labels = classes.reshape(-1).long().clamp(min=1)
        masks = select_class_masks(logits, labels).sigmoid()  # [B*D, mask_height, mask_width]
        masks = masks.reshape(batch, rows, masks.shape[1], masks.shape[2])
        valid = torch.arange(rows, device=boxes.device)[None, :] < counts[:, None]  # [B, D]
        return (masks * valid[:, :, None, None].to(masks),)  # a tuple: one named output


def faster_rcnn_graph(model: FasterRCNN, canvas_size: tuple[int, int]) -> tuple[onnx.ModelProto, GraphPart]:
    """The network part (both stages and the proposal NMS, from ``canvas`` to
    ``second_stage_boxes`` / ``second_stage_scores`` / ``num_proposals``; nodes and
    initializers only) and the detection part (-> the four outputs). Each exported stage is
    checked with ONNX Runtime against the eager module on a random canvas."""
    model = model.eval()
    generator = torch.Generator().manual_seed(0)
    canvas = torch.rand(2, 3, *canvas_size, generator=generator)
    first = _export(FirstStage(model), (canvas,), ["canvas"], [FEATURES, RPN_BOXES, OBJECTNESS])
    with torch.no_grad():
        features, _, _ = FirstStage(model)(canvas)
        # proposals as the eager model finds them on this canvas (a window smaller than it)
        window = true_image_shapes([(canvas_size[0] * 3 // 4, canvas_size[1])] * 2)
        proposals = model.predict(canvas, window)["proposal_boxes"]
    second = _export(SecondStage(model, canvas_size), (features, proposals),
                     [FEATURES, PROPOSALS], [BOXES, SCORES])
    first, second = _prefixed(first, "first_stage"), _prefixed(second, "second_stage")
    proposal_nms = _proposal_graph(model)
    nodes = list(first.graph.node) + proposal_nms.nodes + list(second.graph.node)
    initializers = (list(first.graph.initializer) + proposal_nms.initializers
                    + list(second.graph.initializer))
    network = helper.make_model(helper.make_graph(nodes, "faster_rcnn", [], [], initializer=initializers),
                                opset_imports=list(first.opset_import))
    network.ir_version = first.ir_version
    detection = _detection_graph(model)
    if model.mask_head is not None:
        masks = _prefixed(_mask_stage(model, canvas_size, features), "mask_stage")
        detection.nodes += list(masks.graph.node)
        detection.initializers += list(masks.graph.initializer)
    return network, detection


def _mask_stage(model: FasterRCNN, canvas_size: tuple[int, int], features: Tensor,
                ) -> onnx.ModelProto:
    """``MaskStage`` exported and checked on ``features`` (the first stage's, batch 2) with
    random detections (the second image's last two rows padding)."""
    generator = torch.Generator().manual_seed(1)
    batch, rows = int(features.shape[0]), int(model.max_detections)
    corner = torch.rand(batch, rows, 2, generator=generator) * 0.6  # (ymin, xmin)
    size = 0.1 + torch.rand(batch, rows, 2, generator=generator) * 0.3
    boxes = torch.cat([corner, corner + size], dim=2)  # [B, D, 4]
    classes = torch.randint(1, model.num_classes + 1, (batch, rows), generator=generator).float()
    counts = torch.tensor([rows, max(rows - 2, 0)] + [rows] * (batch - 2), dtype=torch.float32)
    return _export(MaskStage(model, canvas_size), (features, boxes, classes, counts),
                   [FEATURES, "detection_boxes", "detection_classes", "num_detections"],
                   ["detection_masks"])


def _export(module: nn.Module, example: tuple[Tensor, ...], input_names: list[str],
            output_names: list[str]) -> onnx.ModelProto:
    """``module`` through torch.onnx with a dynamic batch dimension shared by every input,
    checked with ONNX Runtime against the eager module on ``example``."""
    module = module.eval()
    proto = trace_to_onnx(module, example, input_names, output_names)
    with torch.no_grad():
        expected = module(*example)
    found = run_onnx(proto, {name: value.numpy() for name, value in zip(input_names, example, strict=True)})
    for name, want, got in zip(output_names, expected, found, strict=True):
        scale = max(1.0, float(want.abs().max())) if want.numel() else 1.0
        error = float(np.abs(want.numpy() - got).max()) / scale if want.numel() else 0.0
        if tuple(want.shape) != got.shape or error > NETWORK_TOLERANCE:
            raise ObjdetError(f"ONNX export: the graph's {name} differ from the model's "
                              f"(shape {got.shape} vs {tuple(want.shape)}, relative error {error:.3g})")
    return proto


def _prefixed(proto: onnx.ModelProto, prefix: str) -> onnx.ModelProto:
    """A copy of ``proto`` whose node, value and initializer names start with ``prefix/``,
    except its graph inputs and outputs (the joints between the parts)."""
    keep = {value.name for value in proto.graph.input} | {value.name for value in proto.graph.output}
    renamed: Mapping[str, str] = _RenameMap(prefix, keep)
    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    for node in copy.graph.node:
        if any(attribute.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
               for attribute in node.attribute):
            raise ObjdetError(f"ONNX export: {node.op_type} with a subgraph in an exported "
                              "stage; objdet merges flat graphs only")
        node.name = f"{prefix}/{node.name}"
        node.input[:] = [renamed[name] for name in node.input]
        node.output[:] = [renamed[name] for name in node.output]
    for initializer in copy.graph.initializer:
        initializer.name = renamed[initializer.name]
    for value in copy.graph.value_info:
        value.name = renamed[value.name]
    return copy


class _RenameMap(dict[str, str]):
    def __init__(self, prefix: str, keep: set[str]) -> None:
        super().__init__()
        self.prefix, self.keep = prefix, keep

    def __missing__(self, name: str) -> str:
        return name if not name or name in self.keep else f"{self.prefix}/{name}"


def _proposal_graph(model: FasterRCNN) -> GraphPart:
    """``rpn_boxes [B, A, 4]``, ``objectness [B, A]`` and ``resized_size`` -> ``proposals
    [B, P, 4]`` (zero rows after ``num_proposals`` int64 ``[B]``), as ``select_proposals``."""
    g = GraphPart("proposals")
    max_proposals = int(model.first_stage_max_proposals)
    selected = g.op(  # [M, 3] int64: (image, 0, anchor), by image, then score
        "NonMaxSuppression",
        [RPN_BOXES, g.op("Unsqueeze", [OBJECTNESS, g.const([1], np.int64)]),
         g.const([max_proposals], np.int64), g.const([model.first_stage_nms_iou_threshold]),
         g.const([model.first_stage_nms_score_threshold])],
        center_point_box=0,
    )
    image, _, anchor = (g.op("Squeeze", [part, g.const([1], np.int64)])
                        for part in g.op("Split", [selected], outputs=3, axis=1, num_outputs=3))
    kept = g.op("GatherND", [RPN_BOXES, g.op("Concat", [_column(g, image), _column(g, anchor)], axis=1)])
    columns, has_area = clip_to_window(g, kept)
    image = g.op("Compress", [image, has_area], axis=0)
    clipped = g.op("Compress", [g.op("Concat", list(columns), axis=1), has_area], axis=0)  # [K, 4]
    batch = g.op("Slice", [g.op("Shape", [RPN_BOXES]), g.const([0], np.int64), g.const([1], np.int64)])
    slot = g.op("Concat", [_column(g, image), _column(g, rank_within_image(g, image, batch))], axis=1)
    shape = g.op("Concat", [batch, g.const([max_proposals, 4], np.int64)], axis=0)
    zeros = g.op("ConstantOfShape", [shape], value=numpy_helper.from_array(np.zeros(1, np.float32)))
    g.name("ScatterND", [zeros, slot, clipped], PROPOSALS)
    none = g.op("ConstantOfShape", [batch], value=numpy_helper.from_array(np.zeros(1, np.int64)))
    ones = g.op("Expand", [g.const([1], np.int64), g.op("Shape", [image])])
    g.name("ScatterElements", [none, image, ones], NUM_PROPOSALS, axis=0, reduction="add")
    return g


def _detection_graph(model: FasterRCNN) -> GraphPart:
    """``second_stage_boxes``, ``second_stage_scores``, ``num_proposals`` and ``resized_size``
    -> the four detection outputs, as ``SecondStageNonMaxSuppression``."""
    g = GraphPart("postprocess")
    nms = model.postprocessor
    shape = g.op("Shape", [SCORES])  # (B, P, C)
    batch, rows, classes = (g.op("Slice", [shape, g.const([i], np.int64), g.const([i + 1], np.int64)])
                            for i in range(3))
    every_class = g.op("Expand", [BOXES, g.op("Concat", [shape, g.const([4], np.int64)], axis=0)])
    flat_shape = g.op("Concat", [g.const([-1], np.int64), rows, g.const([4], np.int64)], axis=0)
    boxes = g.op("Reshape", [g.op("Transpose", [every_class], perm=[0, 2, 1, 3]), flat_shape])  # [B*C, P, 4]
    row = g.op("Range", [g.const(0, np.int64), g.op("Squeeze", [rows, g.const([0], np.int64)]),
                         g.const(1, np.int64)])  # [P]
    valid = g.op("Less", [g.op("Unsqueeze", [row, g.const([0], np.int64)]),
                          g.op("Unsqueeze", [NUM_PROPOSALS, g.const([1], np.int64)])])  # [B, P]
    masked = g.op("Where", [g.op("Unsqueeze", [valid, g.const([2], np.int64)]), SCORES, g.const(_NEVER)])
    scores = g.op("Reshape", [g.op("Transpose", [masked], perm=[0, 2, 1]),
                              g.op("Concat", [g.const([-1, 1], np.int64), rows], axis=0)])  # [B*C, 1, P]
    selected = g.op(  # [M, 3] int64: (image * C + class, 0, proposal)
        "NonMaxSuppression",
        [boxes, scores, g.const([nms.max_detections_per_class], np.int64),
         g.const([nms.iou_threshold]), g.const([nms.score_threshold])],
        center_point_box=0,
    )
    pair, _, proposal = (g.op("Squeeze", [part, g.const([1], np.int64)])
                         for part in g.op("Split", [selected], outputs=3, axis=1, num_outputs=3))
    kept_scores = g.op("GatherND", [scores, selected])  # [M]
    kept_boxes = g.op("GatherND", [boxes, g.op("Concat", [_column(g, pair), _column(g, proposal)], axis=1)])
    image = g.op("Div", [pair, classes])  # integer division
    class_index = g.op("Mod", [pair, classes])
    write_detections(g, batch, image, class_index, kept_scores, kept_boxes, int(nms.max_total_detections))
    return g


def _column(g: GraphPart, values: str) -> str:
    """``[M]`` -> ``[M, 1]``."""
    return g.op("Unsqueeze", [values, g.const([1], np.int64)])


