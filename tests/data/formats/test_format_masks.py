"""COCO mask decoding equals pycocotools (the reference) on polygons and RLEs."""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as coco_mask

from objdet.data.formats.masks import (
    decode_counts_string,
    decode_rle_counts,
    encode_counts_string,
    encode_rle_counts,
    mask_to_rle,
    segmentation_to_mask,
)
from objdet.errors import DataError

HEIGHT, WIDTH = 23, 31


def reference_mask(segmentation: object, height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    """pycocotools' decoding of a COCO segmentation, as COCO.annToMask does it."""
    if isinstance(segmentation, list):
        rle = coco_mask.merge(coco_mask.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation["counts"], list):
        rle = coco_mask.frPyObjects(segmentation, height, width)
    else:
        rle = segmentation
    return coco_mask.decode(rle)


POLYGONS = {
    "triangle": [[2.0, 3.0, 20.5, 4.2, 9.7, 18.9]],
    "square_on_grid": [[5, 5, 15, 5, 15, 15, 5, 15]],
    "concave": [[1, 1, 29, 1, 29, 21, 15, 8, 1, 21]],
    "two_parts": [[1, 1, 8, 1, 8, 8, 1, 8], [20.3, 10.1, 29.9, 10.4, 25.2, 22.7]],
    "outside_image": [[-4.2, -3.1, 40.0, 2.0, 35.5, 30.0, 3.0, 27.0]],
    "clockwise_thin": [[3.3, 2.2, 3.9, 20.1, 4.4, 2.7]],
}


@pytest.mark.parametrize("name", sorted(POLYGONS))
def test_polygons_decode_like_pycocotools(name: str) -> None:
    segmentation = POLYGONS[name]
    ours = segmentation_to_mask(segmentation, HEIGHT, WIDTH, "test")
    np.testing.assert_array_equal(ours, reference_mask(segmentation))
    assert ours.sum() > 0


def test_random_polygons_decode_like_pycocotools() -> None:
    generator = np.random.default_rng(0)
    for _ in range(40):
        num_points = int(generator.integers(3, 9))
        polygon = generator.uniform(-3, 34, size=2 * num_points).round(2).tolist()
        ours = segmentation_to_mask([polygon], HEIGHT, WIDTH, "random")
        np.testing.assert_array_equal(ours, reference_mask([polygon]), err_msg=str(polygon))


def test_uncompressed_and_compressed_rle_decode_like_pycocotools() -> None:
    generator = np.random.default_rng(1)
    truth = (generator.random((HEIGHT, WIDTH)) > 0.6).astype(np.uint8)
    truth[:, :3] = 1  # long runs as well as short ones
    compressed = coco_mask.encode(np.asfortranarray(truth))
    text = compressed["counts"].decode("ascii")
    counts = encode_rle_counts(truth)
    uncompressed = {"size": [HEIGHT, WIDTH], "counts": counts}

    np.testing.assert_array_equal(segmentation_to_mask(uncompressed, HEIGHT, WIDTH, "t"), truth)
    np.testing.assert_array_equal(reference_mask(uncompressed), truth)
    for counts_field in (text, compressed["counts"]):  # str and bytes
        rle = {"size": [HEIGHT, WIDTH], "counts": counts_field}
        np.testing.assert_array_equal(segmentation_to_mask(rle, HEIGHT, WIDTH, "t"), truth)
    assert decode_counts_string(text) == counts
    assert encode_counts_string(counts) == text


def test_mask_starting_with_foreground_and_large_counts() -> None:
    truth = np.zeros((300, 400), dtype=np.uint8)
    truth[:, :350] = 1  # first run of 0s is empty; counts larger than 5-bit groups
    counts = encode_rle_counts(truth)
    assert counts[0] == 0
    rle = mask_to_rle(truth)
    assert rle["counts"] == coco_mask.encode(np.asfortranarray(truth))["counts"].decode()
    np.testing.assert_array_equal(decode_rle_counts(counts, 300, 400), truth)


def test_bad_segmentations_name_the_annotation() -> None:
    with pytest.raises(DataError, match="ann 7.*sum to height"):
        decode_rle_counts([5, 5], HEIGHT, WIDTH, "ann 7")
    with pytest.raises(DataError, match="ann 8.*does not match the image"):
        segmentation_to_mask({"size": [5, 5], "counts": [25]}, HEIGHT, WIDTH, "ann 8")
    with pytest.raises(DataError, match="ann 9.*x, y pairs"):
        segmentation_to_mask([[1, 2, 3]], HEIGHT, WIDTH, "ann 9")
