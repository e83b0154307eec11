"""Draw detections on an image with PIL: a box, the class name and the score per detection,
and its instance mask (if any) blended in the class colour.

Used by ``objdet detect`` and for TensorBoard image summaries. Boxes are in objdet's layout,
``(x1, y1, x2, y2)`` absolute pixels of the image they are drawn on. The input image is
never modified; a new RGB ``PIL.Image`` is returned.
"""

from __future__ import annotations

import colorsys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from objdet.structures.label_map import LabelMap

# Hues stepped by the golden ratio stay far apart for any number of classes.
_GOLDEN_RATIO = 0.618033988749895

CategoryIndex = Mapping[int, Any] | LabelMap


def class_color(class_id: int) -> tuple[int, int, int]:
    """A bright RGB colour for ``class_id``; the same id always gets the same colour."""
    hue = (class_id * _GOLDEN_RATIO) % 1.0
    red, green, blue = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return round(red * 255), round(green * 255), round(blue * 255)


def to_pil_image(image: Any) -> Image.Image:
    """An RGB ``PIL.Image`` copy of a PIL image, a ``uint8 [H, W, 3]`` array or a
    ``[3, H, W]`` tensor (uint8, or float in [0, 1])."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")  # convert() always returns a new image
    array = np.asarray(image.detach().cpu() if hasattr(image, "detach") else image)
    if array.ndim == 3 and array.shape[0] == 3 and array.shape[2] != 3:
        array = array.transpose(1, 2, 0)  # [3, H, W] -> [H, W, 3]
    if array.dtype != np.uint8:
        array = (np.clip(array.astype(np.float32), 0.0, 1.0) * 255.0).round().astype(np.uint8)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"expected an RGB image [H, W, 3] or [3, H, W], got shape {array.shape}")
    return Image.fromarray(np.ascontiguousarray(array), mode="RGB")


def category_name(category_index: CategoryIndex | None, class_id: int) -> str:
    """The display name of ``class_id``; ``'class <id>'`` when the index lacks it."""
    if isinstance(category_index, LabelMap):
        return category_index.item(class_id).label if class_id in category_index else f"class {class_id}"
    entry = category_index.get(class_id) if category_index is not None else None
    if isinstance(entry, Mapping):  # the OD API's {id: {"id": .., "name": ..}}
        entry = entry.get("name")
    return str(entry) if entry is not None else f"class {class_id}"


def draw_detections(
    image: Any,
    boxes_xyxy: Any,
    labels: Any,
    scores: Any,
    category_index: CategoryIndex | None = None,
    min_score: float = 0.5,
    *,
    line_width: int | None = None,
    max_boxes: int | None = None,
    masks: Any | None = None,
    keypoints: Any | None = None,
    keypoint_scores: Any | None = None,
    keypoint_edges: Sequence[tuple[int, int]] = (),
    keypoint_min_score: float = 0.5,
) -> Image.Image:
    """Draw each detection with ``score >= min_score`` on a copy of ``image``.

    Args:
        image: PIL image, ``uint8 [H, W, 3]`` array or ``[3, H, W]`` tensor.
        boxes_xyxy: ``[N, 4]`` (x1, y1, x2, y2) absolute pixels.
        labels: ``[N]`` label-map ids (the colour and the name come from the id).
        scores: ``[N]`` scores in [0, 1].
        category_index: id -> name (dict, OD API category index or ``LabelMap``).
        min_score: detections scoring below it are not drawn.
        line_width: box outline in pixels (default: scaled with the image, at least 2).
        max_boxes: draw at most this many (the highest scoring first).
        masks: ``[N, H, W]`` (or ``[N, 1, H, W]``) instance masks over the image: 0/1, or
            float probabilities (foreground from 0.5); each drawn detection's is blended in
            its class colour at ``MASK_ALPHA``, as the OD API's ``draw_mask_on_image_array``.
        keypoints: ``[N, K, 2]`` (x, y) pixels (NaN: none); each drawn detection's are dots
            in its class colour, joined by ``keypoint_edges`` (index pairs), as the OD API's
            ``draw_keypoints_on_image``; with ``keypoint_scores [N, K]`` only those scoring
            ``>= keypoint_min_score`` (the OD API's 0.5).
    Returns:
        A new RGB ``PIL.Image`` of the same size.
    """
    canvas = to_pil_image(image)
    boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    label_ids = np.asarray(labels).reshape(-1).astype(np.int64)
    score_values = np.asarray(scores, dtype=np.float64).reshape(-1)
    if not len(boxes) == len(label_ids) == len(score_values):
        raise ValueError(
            f"boxes, labels and scores must have the same length, got "
            f"{len(boxes)}, {len(label_ids)}, {len(score_values)}"
        )
    if line_width is None:
        line_width = max(2, round(min(canvas.size) / 200))
    order = [int(i) for i in np.argsort(-score_values, kind="stable") if score_values[i] >= min_score]
    # Draw the lowest-scoring first so the best detections end up on top.
    order = list(reversed(order[:max_boxes] if max_boxes is not None else order))
    if masks is not None:
        canvas = _blend_masks(canvas, _foreground_masks(masks, len(boxes), canvas.size),
                              [(index, class_color(int(label_ids[index]))) for index in order])
    draw = ImageDraw.Draw(canvas)
    if keypoints is not None:
        _draw_keypoints(draw, _shown_keypoints(keypoints, keypoint_scores, len(boxes),
                                               keypoint_min_score),
                        [(index, class_color(int(label_ids[index]))) for index in order],
                        keypoint_edges, line_width)
    font = ImageFont.load_default()
    for index in order:
        color = class_color(int(label_ids[index]))
        x1, y1, x2, y2 = (float(v) for v in boxes[index])
        draw.rectangle((x1, y1, x2, y2), outline=color, width=line_width)
        text = f"{category_name(category_index, int(label_ids[index]))}: {score_values[index]:.0%}"
        _draw_label(draw, font, text, (x1, y1), color)
    return canvas


MASK_ALPHA = 0.4


def _shown_keypoints(keypoints: Any, scores: Any | None, count: int, min_score: float
                     ) -> np.ndarray:
    """``[N, K, 2]`` float (x, y), NaN where not drawn; a ValueError unless one per detection."""
    def as_array(value: Any) -> np.ndarray:
        return np.array(value.detach().cpu() if hasattr(value, "detach") else value,
                        dtype=np.float64)

    points = as_array(keypoints)
    if points.ndim != 3 or points.shape[0] != count or points.shape[2] < 2:
        raise ValueError(f"keypoints must be [{count}, K, 2] (x, y), got shape {points.shape}")
    points = points[:, :, :2]
    if scores is not None:
        values = as_array(scores)
        if values.shape != points.shape[:2]:
            raise ValueError(f"keypoint_scores must be {list(points.shape[:2])}, got "
                             f"{list(values.shape)}")
        points[values < min_score] = np.nan
    return points


def _draw_keypoints(draw: ImageDraw.ImageDraw, points: np.ndarray,
                    drawn: list[tuple[int, tuple[int, int, int]]],
                    edges: Sequence[tuple[int, int]], radius: int) -> None:
    for index, color in drawn:
        for start, end in edges:
            if max(start, end) < points.shape[1] and not np.isnan(points[index, [start, end]]).any():
                (x1, y1), (x2, y2) = points[index, start], points[index, end]
                draw.line((x1, y1, x2, y2), fill=color, width=max(1, radius // 2))
        for x, y in points[index]:
            if not (np.isnan(x) or np.isnan(y)):
                draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=color)


def _foreground_masks(masks: Any, count: int, size: tuple[int, int]) -> np.ndarray:
    """``masks`` as bool ``[N, H, W]``; a ValueError unless one per detection, image-sized."""
    array = np.asarray(masks.detach().cpu() if hasattr(masks, "detach") else masks)
    if array.ndim == 4 and array.shape[1] == 1:
        array = array[:, 0]
    width, height = size
    if array.shape != (count, height, width):
        raise ValueError(f"masks must be [{count}, {height}, {width}] (one per detection, the "
                         f"image's size), got shape {array.shape}")
    return array >= 0.5 if np.issubdtype(array.dtype, np.floating) else array.astype(bool)


def _blend_masks(canvas: Image.Image, masks: np.ndarray,
                 drawn: list[tuple[int, tuple[int, int, int]]]) -> Image.Image:
    """Each ``(index, colour)``'s mask blended into ``canvas``, in order (later on top)."""
    pixels = np.asarray(canvas, dtype=np.float32)  # [H, W, 3]
    for index, color in drawn:
        foreground = masks[index]
        pixels[foreground] = (1.0 - MASK_ALPHA) * pixels[foreground] + MASK_ALPHA * np.asarray(
            color, dtype=np.float32)
    return Image.fromarray(pixels.round().astype(np.uint8), mode="RGB")


def _draw_label(
    draw: ImageDraw.ImageDraw, font: Any, text: str, corner: tuple[float, float],
    color: tuple[int, int, int],
) -> None:
    """``text`` on a filled background just above the box corner (below it, inside the
    box, when the box touches the top of the image)."""
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    text_width, text_height = right - left + 4, bottom - top + 4
    x, y = corner
    y = y - text_height if y - text_height >= 0 else y
    draw.rectangle((x, y, x + text_width, y + text_height), fill=color)
    brightness = 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]
    text_color = (0, 0, 0) if brightness > 140 else (255, 255, 255)
    draw.text((x + 2 - left, y + 2 - top), text, fill=text_color, font=font)


def save_drawing(
    image: Any, boxes_xyxy: Any, labels: Any, scores: Any, path: Any,
    category_index: CategoryIndex | None = None, min_score: float = 0.0,
    masks: Any | None = None, keypoints: Any | None = None, keypoint_scores: Any | None = None,
    keypoint_edges: Sequence[tuple[int, int]] = (),
) -> None:
    """``draw_detections`` written atomically to ``path`` as PNG."""
    from objdet.atomic import atomic_write

    drawn = draw_detections(image, boxes_xyxy, labels, scores, category_index, min_score=min_score,
                            masks=masks, keypoints=keypoints, keypoint_scores=keypoint_scores,
                            keypoint_edges=keypoint_edges)
    with atomic_write(path, "wb") as handle:
        drawn.save(handle, format="PNG")
