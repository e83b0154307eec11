"""Tests for objdet.viz.draw: real pixels on real PIL images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from objdet.structures.label_map import LabelMap
from objdet.viz.draw import category_name, class_color, draw_detections

GRAY = (128, 128, 128)


def gray_image(height: int = 120, width: int = 160) -> np.ndarray:
    return np.full((height, width, 3), GRAY, dtype=np.uint8)


def test_box_edge_changes_colour_and_interior_is_untouched() -> None:
    image = gray_image()
    drawn = np.asarray(
        draw_detections(image, [[40, 50, 120, 110]], [1], [0.9], {1: "raccoon"}, line_width=2)
    )
    color = class_color(1)
    assert tuple(drawn[80, 40]) == color  # left edge
    assert tuple(drawn[80, 119]) == color  # right edge (x2 inclusive minus width)
    assert tuple(drawn[109, 80]) == color  # bottom edge
    assert (drawn[70:100, 50:110] == GRAY).all()  # interior below the label
    assert (drawn[:, :30] == GRAY).all()  # far left of the box
    assert (image == GRAY).all()  # the input is not modified


def test_label_background_is_drawn_above_the_box() -> None:
    drawn = np.asarray(draw_detections(gray_image(), [[40, 50, 120, 110]], [1], [0.9], {1: "a"}))
    above = drawn[40:49, 41:60]  # the label sits on top of the box's top edge
    assert (above != GRAY).any(axis=-1).mean() > 0.5


def test_label_moves_inside_when_the_box_touches_the_top() -> None:
    drawn = np.asarray(draw_detections(gray_image(), [[40, 0, 120, 110]], [1], [0.9], None))
    assert (drawn[3:10, 42:60] != GRAY).any(axis=-1).mean() > 0.5


def test_min_score_filters_detections() -> None:
    drawn = np.asarray(draw_detections(gray_image(), [[40, 50, 120, 110]], [1], [0.3], None, 0.5))
    assert (drawn == GRAY).all()


def test_classes_get_distinct_colours() -> None:
    colors = {class_color(class_id) for class_id in range(1, 91)}
    assert len(colors) == 90
    drawn = np.asarray(
        draw_detections(
            gray_image(), [[10, 30, 60, 100], [80, 30, 150, 100]], [1, 2], [0.9, 0.8], None,
            line_width=2,
        )
    )
    assert tuple(drawn[60, 10]) == class_color(1)
    assert tuple(drawn[60, 80]) == class_color(2)


def test_accepts_chw_float_tensor_and_pil() -> None:
    tensor = torch.full((3, 40, 50), 0.5)
    assert draw_detections(tensor, np.zeros((0, 4)), [], [], None).size == (50, 40)
    pil = Image.new("RGB", (50, 40), GRAY)
    out = draw_detections(pil, [[5, 5, 30, 30]], [3], [1.0], None)
    assert out is not pil and pil.getpixel((5, 20)) == GRAY
    assert out.getpixel((5, 20)) == class_color(3)


def test_category_names() -> None:
    label_map = LabelMap.from_names(["cat", "dog"])
    assert category_name(label_map, 2) == "dog"
    assert category_name(label_map, 7) == "class 7"
    assert category_name({1: {"id": 1, "name": "cat"}}, 1) == "cat"
    assert category_name({1: "cat"}, 1) == "cat"


def test_mismatched_lengths_are_an_error() -> None:
    with pytest.raises(ValueError, match="same length"):
        draw_detections(gray_image(), [[0, 0, 5, 5]], [1, 2], [0.9], None)


def test_a_score_equal_to_min_score_is_drawn() -> None:
    drawn = np.asarray(draw_detections(gray_image(), [[40, 50, 120, 110]], [1], [0.5], None, 0.5))
    assert tuple(drawn[80, 40]) == class_color(1)


def test_the_best_detection_is_drawn_on_top() -> None:
    # Two boxes share their left edge; the higher score's colour must win there.
    for scores in ([0.9, 0.6], [0.6, 0.9]):
        drawn = np.asarray(
            draw_detections(
                gray_image(), [[40, 50, 120, 110], [40, 60, 100, 100]], [1, 2], scores, None,
                line_width=2,
            )
        )
        best = 1 if scores[0] > scores[1] else 2
        assert tuple(drawn[80, 40]) == class_color(best)


def test_max_boxes_keeps_the_highest_scores() -> None:
    boxes = [[10, 30, 40, 60], [60, 30, 90, 60], [110, 30, 140, 60]]
    drawn = np.asarray(
        draw_detections(gray_image(), boxes, [1, 2, 3], [0.7, 0.9, 0.8], None, 0.0, max_boxes=2)
    )
    assert tuple(drawn[45, 10]) == GRAY  # the lowest score (0.7) is not drawn
    assert tuple(drawn[45, 60]) == class_color(2) and tuple(drawn[45, 110]) == class_color(3)


def test_float_images_in_zero_one_become_0_to_255() -> None:
    tensor = torch.full((3, 40, 50), 0.5)
    tensor[0] = 1.0
    out = np.asarray(draw_detections(tensor, np.zeros((0, 4)), [], [], None))
    assert out.shape == (40, 50, 3) and tuple(out[0, 0]) == (255, 128, 128)
