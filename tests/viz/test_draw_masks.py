"""Instance masks in drawings: blended in the class colour where the mask is on."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from objdet.viz.draw import MASK_ALPHA, class_color, draw_detections


def test_masks_are_blended_in_the_class_colour() -> None:
    image = np.zeros((40, 30, 3), np.uint8)
    masks = torch.zeros(1, 1, 40, 30)
    masks[0, 0, 28:34, 12:20] = 0.8  # probabilities: on from 0.5
    masks[0, 0, 28:34, 20:24] = 0.3
    # the label sits above the box's top-left corner, clear of the mask
    drawn = np.asarray(draw_detections(image, [[10, 26, 26, 36]], [2], [0.9], masks=masks,
                                       line_width=1))
    expected = np.round(MASK_ALPHA * np.asarray(class_color(2), np.float32))
    assert (drawn[30, 15] == expected).all()
    assert (drawn[30, 22] == 0).all()  # below 0.5: off
    assert (drawn[38, 2] == 0).all()


def test_masks_of_detections_below_min_score_are_not_drawn() -> None:
    image = np.zeros((8, 8, 3), np.uint8)
    masks = np.ones((1, 8, 8), np.uint8)
    drawn = np.asarray(draw_detections(image, [[0, 0, 2, 2]], [1], [0.1], masks=masks))
    assert (drawn[5, 5] == 0).all()


def test_masks_must_match_the_detections_and_image() -> None:
    with pytest.raises(ValueError, match=r"masks must be \[1, 8, 8\]"):
        draw_detections(np.zeros((8, 8, 3), np.uint8), [[0, 0, 2, 2]], [1], [0.9],
                        masks=np.ones((1, 4, 4), np.uint8))
