"""objdet equals the OD API's own model, level by level, on committed tiny reference dumps
(tests/fixtures/odapi_parity/make_fixtures.sh runs the OD API in its TF 2.21 environment):
the TF2 checkpoint imported without TensorFlow gives the same preprocessed image, anchors,
raw predictions, post-processing and end-to-end detections."""

from __future__ import annotations

from pathlib import Path

import pytest

from objdet.models.checkpoints.parity import Tolerances, compare_with_reference, matched_share

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "odapi_parity"
CASES = sorted(path.name for path in FIXTURES.iterdir() if (path / "reference.npz").is_file())


def test_every_family_has_a_fixture() -> None:
    assert {"ssd_mobilenet_v2", "ssd_mobilenet_v2_fpnlite", "ssd_resnet50_v1_fpn"} <= set(CASES)


@pytest.mark.parametrize("case", CASES)
def test_objdet_reproduces_the_odapi_level_by_level(case: str) -> None:
    result = compare_with_reference(FIXTURES / case, Tolerances(), name=case)
    # 1e-5, or two float32 ulps of the largest input value (ResNet's 0..255 scale)
    assert result.preprocessed_max_abs <= max(1e-5, result.preprocessed_tolerance), result
    assert result.preprocessed_tolerance <= 3.1e-5
    assert result.anchors_max_abs is not None and result.anchors_max_abs <= 1e-5, result
    assert result.raw_boxes_max_abs <= 1e-4 and result.raw_classes_max_abs <= 1e-4, result
    assert result.postprocess_matched >= 0.99 and result.end_to_end_matched >= 0.95, result
    assert result.ok


def test_matched_share_needs_class_box_and_score() -> None:
    import numpy as np

    reference = {"boxes": np.array([[0.1, 0.1, 0.5, 0.5], [0.2, 0.2, 0.9, 0.9]]),
                 "scores": np.array([0.9, 0.8]), "classes": np.array([0, 1])}
    same = {key: value.copy() for key, value in reference.items()}
    assert matched_share(reference, same) == 1.0
    other_class = {**same, "classes": np.array([1, 1])}
    assert matched_share(reference, other_class) == 0.5
    shifted = {**same, "boxes": same["boxes"] + np.array([0.05, 0, 0.05, 0])}
    assert matched_share(reference, shifted) < 1.0
    off_score = {**same, "scores": same["scores"] + 1e-3}
    assert matched_share(reference, off_score) == 0.0
    one_box_twice = {key: value[:1] for key, value in same.items()}
    assert matched_share(reference, one_box_twice) == 0.5
