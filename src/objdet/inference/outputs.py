"""The whole-detector outputs (the OD API's output tensors, by name, with a batch dimension)
-> ``Detections``: what ``OnnxPredictor``, ``ProgramPredictor`` and ``objdet.serving.Client``
turn their outputs into. Importing this module does not import torch (pasting Mask R-CNN's
box masks into the image does, when there are some).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from objdet.errors import ObjdetError
from objdet.export.signature import KEYPOINT_SCORES, KEYPOINTS, MASKS, OUTPUT_NAMES
from objdet.structures.detections import Detections


def batch_detections(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray,
                     counts: np.ndarray, *, image_size: tuple[int, int],
                     masks: np.ndarray | None = None, keypoints: np.ndarray | None = None,
                     keypoint_scores: np.ndarray | None = None) -> list[Detections]:
    """The whole-detector outputs (``detection_boxes [B, max, 4]`` normalized ymin, xmin,
    ymax, xmax, ``detection_scores``, ``detection_classes [B, max]``, ``num_detections [B]``;
    ``detection_masks [B, max, mask_h, mask_w]`` over each box, ``detection_keypoints
    [B, max, K, 2]`` normalized y, x and ``detection_keypoint_scores [B, max, K]`` where the
    model has them) of a batch of ``image_size`` (height, width) images -> each image's
    detections (box masks also pasted into the image, as the eager model does)."""
    height, width = image_size
    scale = np.array([height, width, height, width], np.float64)
    detections = []
    for index, count in enumerate(counts.astype(np.int64)):
        normalized = boxes[index, :count].astype(np.float64)  # [D, 4] ymin, xmin, ymax, xmax
        instance: dict[str, Any] = {}
        if masks is not None:
            instance["box_masks"] = masks[index, :count]
            instance["masks"] = _image_masks(masks[index, :count], normalized, image_size)
        if keypoints is not None:  # [D, K, 2] normalized (y, x) -> (x, y) pixels
            instance["keypoints"] = (keypoints[index, :count, :, ::-1].astype(np.float64)
                                     * np.array([width, height], np.float64))
        if keypoint_scores is not None:
            instance["keypoint_scores"] = keypoint_scores[index, :count]
        detections.append(Detections(
            boxes=(normalized * scale)[:, [1, 0, 3, 2]], scores=scores[index, :count],
            labels=classes[index, :count].astype(np.int64), image_size=(height, width),
            **instance))
    return detections


def detections_from_outputs(outputs: Mapping[str, np.ndarray], *, image_size: tuple[int, int],
                            ) -> list[Detections]:
    """:func:`batch_detections` of the OD API outputs by name (``[B, ...]`` each)."""
    missing = [name for name in OUTPUT_NAMES if name not in outputs]
    if missing:
        raise ObjdetError(f"detector outputs lack {', '.join(missing)}; got {', '.join(outputs)}")
    return batch_detections(
        *(outputs[name] for name in OUTPUT_NAMES), image_size=image_size,
        masks=outputs.get(MASKS), keypoints=outputs.get(KEYPOINTS),
        keypoint_scores=outputs.get(KEYPOINT_SCORES))


def _image_masks(box_masks: np.ndarray, normalized: np.ndarray, image_size: tuple[int, int],
                 ) -> np.ndarray:
    """``box_masks [D, h, w]`` probabilities over ``normalized [D, 4]`` (ymin, xmin, ymax,
    xmax) boxes -> uint8 0/1 ``[D, H, W]`` image masks (pasted as the eager Mask R-CNN
    pastes them, then thresholded at 0.5)."""
    import torch

    from objdet.models.meta_arch.faster_rcnn_masks import reframe_box_masks_to_image_masks

    if box_masks.shape[0] == 0:
        return np.zeros((0, *image_size), np.uint8)
    corners = torch.from_numpy(normalized[:, [1, 0, 3, 2]].astype(np.float32))  # x1, y1, x2, y2
    pasted = reframe_box_masks_to_image_masks(torch.from_numpy(np.ascontiguousarray(box_masks)),
                                              corners, image_size)  # [D, H, W]
    return (pasted >= 0.5).to(torch.uint8).numpy()
