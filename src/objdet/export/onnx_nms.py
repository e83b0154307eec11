"""``model.onnx``'s post-processing: one batched ``NonMaxSuppression`` (per class, or
class-agnostic), the clip window and the four OD API detection outputs, as ONNX nodes.

Inputs (joints of the whole graph): ``decoded_boxes [B, A, 4]`` (x1, y1, x2, y2 canvas
pixels), ``class_scores [B, A, C]`` (converted, no background) and ``RESIZED_SIZE``; outputs:
``detection_boxes [B, max, 4]`` normalized (ymin, xmin, ymax, xmax), ``detection_scores``,
``detection_classes`` (label-map ids, float) ``[B, max]`` and ``num_detections [B]``, rows
past num_detections zero. ``write_detections``, ``clip_to_window`` and ``rank_within_image``
are shared with the Faster R-CNN graph (``objdet.export.onnx_faster_rcnn``).
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, numpy_helper

from objdet.export.onnx_builder import RESIZED_SIZE, GraphPart
from objdet.models.postprocessing import BatchNonMaxSuppression


def postprocessing_graph(nms: BatchNonMaxSuppression) -> GraphPart:
    """``decoded_boxes [B, A, 4]``, ``class_scores [B, A, C]`` and ``resized_size`` (int64
    ``[2]``) -> the four detection outputs (see the module docstring), with ``nms``'s
    thresholds and caps (per class, or class-agnostic; scores already converted)."""
    if nms.use_class_agnostic_nms:
        return _class_agnostic_postprocessing(nms)
    g = GraphPart("postprocess")
    max_total = int(nms.max_total_detections)
    boxes, scores = "decoded_boxes", "class_scores"
    scores_by_class = g.op("Transpose", [scores], perm=[0, 2, 1])  # [B, C, A]
    selected = g.op(  # [M, 3] int64: (image, class, anchor), by image, class, then score
        "NonMaxSuppression",
        [boxes, scores_by_class, g.const([nms.max_detections_per_class], np.int64),
         g.const([nms.iou_threshold]), g.const([nms.score_threshold])],
        center_point_box=0,
    )
    image, class_index, anchor = (
        g.op("Squeeze", [part, g.const([1], np.int64)])
        for part in g.op("Split", [selected], outputs=3, axis=1, num_outputs=3)
    )
    kept_scores = g.op("GatherND", [scores_by_class, selected])  # [M]
    image_anchor = g.op("Concat", [g.op("Unsqueeze", [image, g.const([1], np.int64)]),
                                   g.op("Unsqueeze", [anchor, g.const([1], np.int64)])], axis=1)
    kept_boxes = g.op("GatherND", [boxes, image_anchor])  # [M, 4] x1, y1, x2, y2
    batch = g.op("Slice", [g.op("Shape", [boxes]), g.const([0], np.int64), g.const([1], np.int64)])
    write_detections(g, batch, image, class_index, kept_scores, kept_boxes, max_total)
    return g


def _class_agnostic_postprocessing(nms: BatchNonMaxSuppression) -> GraphPart:
    """:func:`postprocessing_graph` with use_class_agnostic_nms, as
    ``BatchNonMaxSuppression._class_agnostic``: one batched ``NonMaxSuppression`` over each
    row's best score (every survivor kept: the total cap comes after the clip window), each
    survivor then reporting its ``max_classes_per_detection`` best classes scoring above the
    threshold."""
    g = GraphPart("postprocess")
    boxes, scores = "decoded_boxes", "class_scores"
    shape = g.op("Shape", [scores])  # (B, A, C)
    batch, anchors, classes = (g.op("Slice", [shape, g.const([i], np.int64), g.const([i + 1], np.int64)])
                               for i in range(3))
    best = g.op("ReduceMax", [scores, g.const([2], np.int64)], keepdims=1)  # [B, A, 1]
    selected = g.op(  # [M, 3] int64: (image, 0, anchor), by image, then best score
        "NonMaxSuppression",
        [boxes, g.op("Transpose", [best], perm=[0, 2, 1]), anchors, g.const([nms.iou_threshold]),
         g.const([nms.score_threshold])],
        center_point_box=0,
    )
    image, _, anchor = (g.op("Squeeze", [part, g.const([1], np.int64)])
                        for part in g.op("Split", [selected], outputs=3, axis=1, num_outputs=3))
    image_anchor = g.op("Concat", [g.op("Unsqueeze", [image, g.const([1], np.int64)]),
                                   g.op("Unsqueeze", [anchor, g.const([1], np.int64)])], axis=1)
    top = g.op("Min", [g.const([nms.max_classes_per_detection], np.int64), classes])  # [1]: k
    top_scores, top_classes = g.op("TopK", [g.op("GatherND", [scores, image_anchor]), top],
                                   outputs=2, axis=1, largest=1, sorted=1)  # [M, k] each
    pairs = g.op("Shape", [top_scores])  # (M, k): survivor-major, as the eager NMS lists them
    flat = g.const([-1], np.int64)
    kept_scores = g.op("Reshape", [top_scores, flat])  # [M * k]
    class_index = g.op("Reshape", [top_classes, flat])
    image = g.op("Reshape", [g.op("Expand", [g.op("Unsqueeze", [image, g.const([1], np.int64)]), pairs]),
                             flat])
    box_shape = g.op("Concat", [pairs, g.const([4], np.int64)], axis=0)  # (M, k, 4)
    kept_boxes = g.op("Reshape", [g.op("Expand", [g.op("Unsqueeze", [g.op("GatherND", [boxes, image_anchor]),
                                                                     g.const([1], np.int64)]),
                                                  box_shape]),
                                  g.const([-1, 4], np.int64)])  # [M * k, 4]
    above = g.op("Greater", [kept_scores, g.const(nms.score_threshold)])
    image, class_index, kept_scores, kept_boxes = (
        g.op("Compress", [value, above], axis=0) for value in (image, class_index, kept_scores, kept_boxes))
    write_detections(g, batch, image, class_index, kept_scores, kept_boxes, int(nms.max_total_detections))
    return g


def write_detections(g: GraphPart, batch: str, image: str, class_index: str, kept_scores: str,
                     kept_boxes: str, max_total: int) -> None:
    """NMS survivors -> the four detection outputs: each survivor's ``image`` and
    ``class_index`` (int64 ``[M]``, class 0-based), score ``[M]`` and box ``[M, 4]`` (x1, y1,
    x2, y2 canvas pixels) are clipped to the resized image (``RESIZED_SIZE``), those without
    area dropped, ordered by image then score, and the best ``max_total`` of each image
    written into zero-filled ``[B, max_total, ...]`` rows (``batch``: int64 ``[1]``, B)."""
    (x1, y1, x2, y2), has_area = clip_to_window(g, kept_boxes)
    window_height, window_width = _window(g)
    normalized = g.op("Concat", [g.op("Div", [y1, window_height]), g.op("Div", [x1, window_width]),
                                 g.op("Div", [y2, window_height]), g.op("Div", [x2, window_width])],
                      axis=1)  # [M, 4] ymin, xmin, ymax, xmax
    image, class_index, kept_scores, normalized = (
        g.op("Compress", [value, has_area], axis=0)
        for value in (image, class_index, kept_scores, normalized)
    )
    # order: by image, then score descending; ties keep NMS order (TopK is stable)
    count = g.op("Shape", [kept_scores])
    by_score = g.op("TopK", [kept_scores, count], outputs=2, axis=0, largest=1, sorted=1)[1]
    image, class_index, kept_scores, normalized = (
        g.op("Gather", [value, by_score], axis=0)
        for value in (image, class_index, kept_scores, normalized)
    )
    by_image = g.op("TopK", [g.op("Cast", [image], to=TensorProto.FLOAT), count],
                    outputs=2, axis=0, largest=0, sorted=1)[1]
    image, class_index, kept_scores, normalized = (
        g.op("Gather", [value, by_image], axis=0)
        for value in (image, class_index, kept_scores, normalized)
    )
    rank = rank_within_image(g, image, batch)
    within = g.op("Less", [rank, g.const(max_total, np.int64)])
    image, rank, class_index, kept_scores, normalized = (
        g.op("Compress", [value, within], axis=0)
        for value in (image, rank, class_index, kept_scores, normalized)
    )
    slot = g.op("Concat", [g.op("Unsqueeze", [image, g.const([1], np.int64)]),
                           g.op("Unsqueeze", [rank, g.const([1], np.int64)])], axis=1)  # [K, 2]
    rows = g.op("Concat", [batch, g.const([max_total], np.int64)], axis=0)
    zeros = g.op("ConstantOfShape", [rows], value=numpy_helper.from_array(np.zeros(1, np.float32)))
    zeros4 = g.op("ConstantOfShape", [g.op("Concat", [rows, g.const([4], np.int64)], axis=0)],
                  value=numpy_helper.from_array(np.zeros(1, np.float32)))
    g.name("ScatterND", [zeros4, slot, normalized], "detection_boxes")
    g.name("ScatterND", [zeros, slot, kept_scores], "detection_scores")
    label = g.op("Add", [g.op("Cast", [class_index], to=TensorProto.FLOAT), g.const(1.0)])
    g.name("ScatterND", [zeros, slot, label], "detection_classes")
    none = g.op("ConstantOfShape", [batch], value=numpy_helper.from_array(np.zeros(1, np.float32)))
    ones = g.op("Expand", [g.const([1.0]), g.op("Shape", [image])])
    g.name("ScatterElements", [none, image, ones], "num_detections", axis=0, reduction="add")


def _window(g: GraphPart) -> tuple[str, str]:
    """The clip window: (height, width) float ``[1]`` each, of the resized image on the canvas
    (every image of a batch alike)."""
    window = g.op("Cast", [RESIZED_SIZE], to=TensorProto.FLOAT)
    height, width = g.op("Split", [window], outputs=2, axis=0, num_outputs=2)
    return height, width


def clip_to_window(g: GraphPart, boxes: str) -> tuple[tuple[str, str, str, str], str]:
    """Boxes ``[M, 4]`` (x1, y1, x2, y2) clipped to the window -> the four ``[M, 1]`` columns
    and ``has_area`` bool ``[M]`` (x2 > x1 and y2 > y1 after clipping), as the eager models'
    clip windows compute them."""
    window_height, window_width = _window(g)
    zero = g.const(0.0)
    x1, y1, x2, y2 = g.op("Split", [boxes], outputs=4, axis=1, num_outputs=4)
    x1, x2 = (g.op("Min", [g.op("Max", [v, zero]), window_width]) for v in (x1, x2))
    y1, y2 = (g.op("Min", [g.op("Max", [v, zero]), window_height]) for v in (y1, y2))
    has_area = g.op("Squeeze", [g.op("And", [g.op("Greater", [x2, x1]), g.op("Greater", [y2, y1])]),
                                g.const([1], np.int64)])
    return (x1, y1, x2, y2), has_area


def rank_within_image(g: GraphPart, image: str, batch: str) -> str:
    """int64 ``[M]``: each row's position among the rows of its image, for rows grouped by
    image (``image`` int64 ``[M]`` non-decreasing; ``batch`` int64 ``[1]``): its position
    minus the first position of its image."""
    count = g.op("Squeeze", [g.op("Shape", [image]), g.const([0], np.int64)])
    position = g.op("Range", [g.const(0, np.int64), count, g.const(1, np.int64)])
    never = g.op("Expand", [g.const([np.iinfo(np.int64).max], np.int64), batch])
    first = g.op("ScatterElements", [never, image, position], axis=0, reduction="min")
    return g.op("Sub", [position, g.op("Gather", [first, image], axis=0)])
