from __future__ import annotations

import pytest
import torch

from objdet.data.resize import resize_sample
from objdet.models.image_resizers import FixedShapeResizer, KeepAspectRatioResizer, batch_images
from objdet.structures.sample import Sample


def rectangle_sample(height: int, width: int, box: tuple[int, int, int, int]) -> Sample:
    image = torch.zeros(3, height, width, dtype=torch.uint8)
    x1, y1, x2, y2 = box
    image[:, y1:y2, x1:x2] = 255
    masks = (image[:1] > 0).to(torch.uint8)
    return Sample(height=height, width=width, image=image, boxes=torch.tensor([box], dtype=torch.float32),
                  labels=torch.tensor([1]), masks=masks, keypoints=torch.tensor([[[x1, y1]]], dtype=torch.float32),
                  areas=torch.tensor([float((x2 - x1) * (y2 - y1))]))


def test_boxes_masks_keypoints_follow_the_image() -> None:
    sample = rectangle_sample(80, 160, (40, 20, 120, 60))
    resized = resize_sample(sample, FixedShapeResizer(height=40, width=40))
    assert resized.image is not None and resized.image.shape == (3, 40, 40)
    assert (resized.height, resized.width) == (40, 40)
    assert resized.boxes.tolist() == [[10.0, 10.0, 30.0, 30.0]]
    rows, cols = torch.nonzero(resized.image[0] > 0.5, as_tuple=True)
    assert (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1) == (10, 10, 30, 30)
    assert resized.masks is not None and resized.masks.shape == (1, 40, 40) and resized.masks.sum() == 400
    assert resized.keypoints is not None and resized.keypoints.tolist() == [[[10.0, 10.0]]]
    assert resized.areas is not None and resized.areas.item() == 400.0


def test_same_size_is_untouched_and_input_not_mutated() -> None:
    sample = rectangle_sample(40, 40, (1, 2, 3, 4))
    assert resize_sample(sample, FixedShapeResizer(height=40, width=40)) is sample
    resize_sample(sample, FixedShapeResizer(height=20, width=20))
    assert sample.boxes.tolist() == [[1.0, 2.0, 3.0, 4.0]] and sample.image.dtype == torch.uint8


@pytest.mark.parametrize("interpolation", ["bilinear", "nearest", "bicubic", "area"])
def test_pre_resized_image_is_what_the_model_would_compute(interpolation: str) -> None:
    # Loader workers run on one thread, the model on several: the values must not depend on it.
    generator = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (3, 700, 900), dtype=torch.uint8, generator=generator)
    sample = Sample(height=700, width=900, image=image)
    threads = torch.get_num_threads()
    try:
        for resizer in (FixedShapeResizer(height=300, width=512, interpolation=interpolation),
                        KeepAspectRatioResizer(min_dimension=400, max_dimension=1024,
                                               interpolation=interpolation)):
            torch.set_num_threads(2)
            in_model = batch_images([image.float() / 255.0], resizer).images
            torch.set_num_threads(1)
            in_loader = batch_images([resize_sample(sample, resizer).image], resizer).images
            assert torch.equal(in_model, in_loader)
    finally:
        torch.set_num_threads(threads)
