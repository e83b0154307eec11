"""Draw detections on an image with PIL: a box, the class name and the score per detection.

Used by ``objdet detect`` and for TensorBoard image summaries. Boxes are in objdet's layout,
``(x1, y1, x2, y2)`` absolute pixels of the image they are drawn on. The input image is
never modified; a new RGB ``PIL.Image`` is returned.
"""

from __future__ import annotations

import colorsys
from collections.abc import Mapping
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
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for index in order:
        color = class_color(int(label_ids[index]))
        x1, y1, x2, y2 = (float(v) for v in boxes[index])
        draw.rectangle((x1, y1, x2, y2), outline=color, width=line_width)
        text = f"{category_name(category_index, int(label_ids[index]))}: {score_values[index]:.0%}"
        _draw_label(draw, font, text, (x1, y1), color)
    return canvas


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
) -> None:
    """``draw_detections`` written atomically to ``path`` as PNG."""
    from objdet.atomic import atomic_write

    drawn = draw_detections(image, boxes_xyxy, labels, scores, category_index, min_score=min_score)
    with atomic_write(path, "wb") as handle:
        drawn.save(handle, format="PNG")
