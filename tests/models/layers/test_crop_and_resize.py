"""crop_and_resize's two TF crops: a box ending on the canvas edge whose last sample position
``x1 * (W - 1) + 16 * ((x2 - x1) * (W - 1) / 16)`` rounds to 63.000004 on a 64-wide map (the
OD API's Mask R-CNN 1024 proposal that showed it): ``tf.image.crop_and_resize`` zeroes that
sample, the matmul crop (neighbours past the map count 0) keeps ~its value."""

from __future__ import annotations

import torch

from objdet.models.layers.crop_and_resize import crop_and_resize

# x1 of that proposal (canvas pixels, float32) / the 1024-pixel canvas; x2 = the edge
X1 = float(torch.tensor(182.73697, dtype=torch.float32) / 1024)


def test_a_sample_rounded_past_the_map_is_zero_only_in_the_native_crop() -> None:
    features = torch.ones(1, 1, 64, 64)
    boxes = torch.tensor([[[X1, 0.25, 1.0, 0.75]]])  # [B, N, 4] (x1, y1, x2, y2)
    native = crop_and_resize(features, boxes, 17, zero_outside_samples=True)  # [1, 1, 17, 17]
    matmul = crop_and_resize(features, boxes, 17)
    assert bool((native[..., :, -1] == 0).all()) and bool((native[..., :, :-1] == 1).all())
    assert float((matmul - 1).abs().max()) < 1e-5
    inside = torch.tensor([[[0.0, 0.25, 0.5, 0.75]]])  # every sample inside: both crops agree
    assert torch.equal(crop_and_resize(features, inside, 17, zero_outside_samples=True),
                       crop_and_resize(features, inside, 17))
