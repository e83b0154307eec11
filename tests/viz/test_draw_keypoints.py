"""Keypoints in draw_detections: dots in the class colour, edges between them, low-scoring or
NaN keypoints left out."""

from __future__ import annotations

import numpy as np
import pytest

from objdet.viz.draw import class_color, draw_detections

BLACK = np.zeros((60, 80, 3), dtype=np.uint8)
BOX = [[5.0, 5.0, 75.0, 55.0]]


def _draw(keypoints: list, scores: list | None = None, edges: tuple = ()) -> np.ndarray:
    drawn = draw_detections(BLACK, BOX, [3], [0.9], min_score=0.0, line_width=2,
                            keypoints=np.array(keypoints), keypoint_edges=edges,
                            keypoint_scores=None if scores is None else np.array(scores))
    return np.asarray(drawn)


def test_keypoints_are_drawn_in_the_class_colour() -> None:
    pixels = _draw([[[20.0, 30.0], [60.0, 30.0], [float("nan"), float("nan")]]])
    color = class_color(3)
    assert tuple(pixels[30, 20]) == color and tuple(pixels[30, 60]) == color
    assert tuple(pixels[30, 40]) == (0, 0, 0)  # no edge asked for


def test_edges_join_keypoints_and_low_scores_are_left_out() -> None:
    pixels = _draw([[[20.0, 30.0], [60.0, 30.0], [40.0, 45.0]]], scores=[[0.9, 0.8, 0.2]],
                   edges=((0, 1), (1, 2)))
    color = class_color(3)
    assert tuple(pixels[30, 40]) == color  # on the edge 0-1
    assert tuple(pixels[45, 40]) == (0, 0, 0)  # keypoint 2 scores below 0.5: not drawn
    assert tuple(pixels[38, 50]) == (0, 0, 0)  # nor its edge


def test_keypoints_must_be_one_set_per_detection() -> None:
    with pytest.raises(ValueError, match="keypoints must be"):
        _draw([[[1.0, 2.0]], [[3.0, 4.0]]])
