"""The mask metrics sets equal the OD API's own evaluators, tied scores included.

The OD API's offline evaluation reads no masks, so these sets are checked on its
evaluators fed arrays in memory: tests/fixtures/odapi_offline_eval/masks.npz (40 images,
scores rounded to 0.1, some ground truth masks empty, some images without detections) and
expected_masks.json, both written by make_fixtures.py with the reference environment;
masks_unknown_ids.npz and expected_masks_unknown_ids.json the same with detections of class
ids the label map does not name (4, 6, 9), which both sides drop. Tied scores make the
weighted sets depend on the CPU's numpy sort: tests/tie_order.py picks the values recorded on
this kind of machine.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from metric_asserts import assert_same_metrics
from tie_order import fixture_file

from objdet.evaluation.base import GroundTruth
from objdet.evaluation.registry import build_evaluators
from objdet.structures.detections import Detections
from objdet.structures.label_map import load_label_map

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "odapi_offline_eval"
# (case, metrics set) -> the OD API's metrics; case "masks" or "masks_unknown_ids".
EXPECTED = {
    (case, metrics_set): metrics
    for case, suffix in (("masks", ""), ("masks_unknown_ids", "_unknown_ids"))
    for metrics_set, metrics in json.loads(
        fixture_file(FIXTURES, f"expected_masks{suffix}.json").read_text()).items()
}


def fixture_images(case: str = "masks") -> list[dict[str, np.ndarray]]:
    """<case>.npz split back into one dict of arrays per image."""
    with np.load(FIXTURES / f"{case}.npz") as data:
        keys = [key for key in data.files if not key.endswith("_counts")]
        images: list[dict[str, np.ndarray]] = [{} for _ in data[f"{keys[0]}_counts"]]
        for key in keys:
            bounds = np.cumsum(np.concatenate([[0], data[f"{key}_counts"]]))
            for image, start, end in zip(images, bounds[:-1], bounds[1:], strict=True):
                image[key] = data[key][start:end]
    return images


@pytest.mark.parametrize(("case", "metrics_set"), sorted(EXPECTED))
def test_mask_metrics_equal_the_odapi_evaluators(case: str, metrics_set: str) -> None:
    categories = load_label_map(FIXTURES / "label_map.pbtxt").categories()
    [evaluator] = build_evaluators([metrics_set], categories)
    images = fixture_images(case)
    assert sum(len(image["det_scores"]) == 0 for image in images) >= 2
    unknown = sum(int(np.isin(image["det_labels"], [4, 6, 9]).sum()) for image in images)
    assert (unknown >= 50) == (case == "masks_unknown_ids"), unknown
    for index, image in enumerate(images):
        evaluator.add_ground_truth(index, GroundTruth(
            boxes=image["gt_boxes"], labels=image["gt_labels"],
            difficult=image["gt_difficult"], group_of=image["gt_group_of"],
            masks=image["gt_masks"], image_labels=image["image_labels"]))
        evaluator.add_detections(index, Detections(
            boxes=image["det_boxes"], scores=image["det_scores"], labels=image["det_labels"],
            masks=image["det_masks"]))
    found, expected = evaluator.evaluate(), EXPECTED[case, metrics_set]
    assert evaluator.unknown_class_detections.total == unknown  # type: ignore[attr-defined]
    assert_same_metrics(found, expected)
