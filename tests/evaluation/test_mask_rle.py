"""mask_rle equals pycocotools' maskApi: polygons, boxes, strings, unions, IoU."""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools import _mask
from pycocotools import mask as coco_mask

from objdet.errors import DataError
from objdet.evaluation import mask_rle
from objdet.evaluation.coco_iou import mask_iou_function

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _reference_mask(rle: dict) -> np.ndarray:
    return coco_mask.decode(rle)


@pytest.mark.parametrize("seed", [0, 1])
def test_polygons_rasterize_like_pycocotools(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(300):
        height, width = int(rng.integers(1, 50)), int(rng.integers(1, 50))
        points = int(rng.integers(3, 10))
        # Some vertices outside the image, some repeated after rounding, some integer.
        polygon = rng.uniform(-4, max(height, width) + 4, 2 * points).round(
            int(rng.integers(0, 3))).tolist()
        reference = coco_mask.frPyObjects([polygon], height, width)[0]
        ours = mask_rle.from_polygon(polygon, height, width)
        np.testing.assert_array_equal(mask_rle.decode(ours), _reference_mask(reference))
        assert ours.area == coco_mask.area(reference)


def test_degenerate_polygons() -> None:
    for polygon in ([5, 5, 5, 5, 5, 5], [0, 0, 10, 0, 10, 0, 0, 0], [1.2, 3.4, 8.9, 3.4, 8.9]):
        reference = coco_mask.frPyObjects([polygon], 12, 12)[0]
        ours = mask_rle.from_polygon(polygon, 12, 12)
        np.testing.assert_array_equal(mask_rle.decode(ours), _reference_mask(reference))


def test_encode_decode_and_compressed_strings_round_trip() -> None:
    rng = np.random.default_rng(2)
    for shape in [(1, 1), (7, 3), (40, 33), (64, 64)]:
        for density in (0.0, 0.3, 1.0):
            mask = (rng.random(shape) < density).astype(np.uint8)
            reference = coco_mask.encode(np.asfortranarray(mask))
            ours = mask_rle.encode(mask)
            assert mask_rle.to_coco_rle(ours)["counts"] == reference["counts"].decode()
            np.testing.assert_array_equal(mask_rle.decode(ours), mask)
            parsed = mask_rle.counts_from_string(reference["counts"])
            np.testing.assert_array_equal(parsed, mask_rle.to_counts(ours))


def test_segmentation_forms() -> None:
    height, width = 30, 40
    polygons = [[2, 2, 20, 2, 20, 15, 2, 15], [25, 20, 35, 20, 30, 28]]
    reference = coco_mask.merge(coco_mask.frPyObjects(polygons, height, width))
    ours = mask_rle.from_segmentation(polygons, height, width)
    np.testing.assert_array_equal(mask_rle.decode(ours), _reference_mask(reference))
    # A 4-number part is a 2-point polygon (pycocotools' frPyObjects raises TypeError on it).
    reference = coco_mask.merge(_mask.frPoly([[3.5, 4, 10, 6.2], [20, 10, 25, 10, 22, 14]],
                                             height, width))
    ours = mask_rle.from_segmentation([[3.5, 4, 10, 6.2], [20, 10, 25, 10, 22, 14]], height,
                                      width)
    np.testing.assert_array_equal(mask_rle.decode(ours), _reference_mask(reference))
    box = coco_mask.frPyObjects(np.array([[3.5, 4, 10, 6.2]]), height,
                                width)[0]
    ours = mask_rle.from_box([3.5, 4, 10, 6.2], height, width)
    np.testing.assert_array_equal(mask_rle.decode(ours), _reference_mask(box))
    uncompressed = {"size": [height, width], "counts": [5, 10, 0, 3, 1182]}
    ours = mask_rle.from_segmentation(uncompressed, height, width)
    reference = coco_mask.frPyObjects(uncompressed, height, width)
    np.testing.assert_array_equal(mask_rle.decode(ours), _reference_mask(reference))
    with pytest.raises(DataError, match="add up to"):
        mask_rle.from_segmentation({"size": [2, 2], "counts": [1, 2]}, 2, 2)
    with pytest.raises(DataError, match="polygons"):
        mask_rle.from_segmentation([[1, 2]], 5, 5)


def test_mask_iou_matches_pycocotools_including_crowd() -> None:
    rng = np.random.default_rng(3)
    height, width = 37, 29
    masks = [(rng.random((height, width)) < p).astype(np.uint8) for p in (0.1, 0.5, 0.9, 0.0)]
    masks.append(np.zeros((height, width), np.uint8))
    masks[-1][5:20, 3:9] = 1
    encoded = [coco_mask.encode(np.asfortranarray(m)) for m in masks]
    ours = [mask_rle.encode(m) for m in masks]
    crowd = np.array([0, 1, 0, 1, 0], dtype=bool)
    reference = coco_mask.iou(encoded, encoded, crowd.astype(np.uint8).tolist())
    rows, columns = np.meshgrid(np.arange(5), np.arange(5), indexing="ij")
    iou = mask_iou_function(ours, ours, crowd)(rows.ravel(), columns.ravel())
    np.testing.assert_array_equal(iou.reshape(5, 5), reference)
