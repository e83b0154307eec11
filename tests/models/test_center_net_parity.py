"""CenterNet against the OD API, level by level, on fixtures the OD API made
(tests/fixtures/odapi_center_net/make_fixtures.py, run in the reference environment): its
TF2 checkpoint is imported with objdet's importer, then preprocessed image, features, raw
heads, post-processing (objdet's fed the OD API's raw heads) and end to end are compared.

``python tests/models/test_center_net_parity.py DIR`` prints the same comparison as JSON for
any fixture directory (e.g. a full-size ResNet-50 one made outside the repository).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from objdet import config as cfg
from objdet.models import build_model
from objdet.models.checkpoints.importer import load_tf2_checkpoint
from objdet.models.meta_arch.center_net import BOX_OFFSET, BOX_SCALE, OBJECT_CENTER, CenterNet

FIXTURES = Path(__file__).parents[1] / "fixtures" / "odapi_center_net"
RELATIVE_TOLERANCE = 1e-4
HEADS = {OBJECT_CENTER: "object_center", BOX_SCALE: "box_scale", BOX_OFFSET: "box_offset"}


def _nchw(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(array, dtype=np.float32)).permute(0, 3, 1, 2)


def _relative(actual: torch.Tensor, expected: torch.Tensor) -> float:
    assert actual.shape == expected.shape, (tuple(actual.shape), tuple(expected.shape))
    return float((actual - expected).abs().max() / expected.abs().max().clamp(min=1e-12))


def _iou(box: torch.Tensor, boxes: torch.Tensor, image_size: int) -> torch.Tensor:
    """IoU of ``box`` with each of ``boxes``; where both have zero area (peaks in the padding
    give boxes clipped to a line or a point) 1 if they coincide within 1e-3 of the image
    size, else 0."""
    top_left = torch.maximum(box[:2], boxes[:, :2])
    bottom_right = torch.minimum(box[2:], boxes[:, 2:])
    intersection = (bottom_right - top_left).clamp(min=0).prod(dim=1)
    area = (box[2:] - box[:2]).prod()
    areas = (boxes[:, 2:] - boxes[:, :2]).prod(dim=1)
    union = area + areas - intersection
    coincide = ((boxes - box).abs().amax(dim=1) <= 1e-3 * image_size).to(boxes)
    return torch.where(union > 0, intersection / union.clamp(min=1e-12), coincide)


def matched_share(detections: dict[str, torch.Tensor], arrays: dict[str, np.ndarray],
                  index: int) -> float:
    """Share of the OD API's detections (score > 0) that objdet reproduces: same class,
    IoU >= 0.99, |delta score| <= 1e-4."""
    count = int(arrays[f"num_detections_{index}"][0])
    height, width = arrays[f"image_{index}"].shape[:2]
    normalized = torch.from_numpy(arrays[f"detection_boxes_{index}"][0, :count])
    expected_boxes = normalized[:, [1, 0, 3, 2]] * torch.tensor([width, height, width, height])
    expected_scores = torch.from_numpy(arrays[f"detection_scores_{index}"][0, :count])
    expected_labels = torch.from_numpy(arrays[f"detection_classes_{index}"][0, :count]).long() + 1
    matched = 0
    for box, score, label in zip(expected_boxes, expected_scores, expected_labels):
        candidates = ((detections["labels"] == label)
                      & ((detections["scores"] - score).abs() <= 1e-4))
        if candidates.any() and _iou(box, detections["boxes"][candidates].double(),
                                     max(height, width)).max() >= 0.99:
            matched += 1
    return matched / max(count, 1)


def load_fixture(directory: Path) -> tuple[CenterNet, dict[str, np.ndarray]]:
    model = build_model(cfg.load(directory / "pipeline.config").model)
    assert isinstance(model, CenterNet)
    load_tf2_checkpoint(model, directory / "checkpoint" / "ckpt-0", "full")
    return model.eval(), dict(np.load(directory / "reference.npz"))


def compare(model: CenterNet, arrays: dict[str, np.ndarray]) -> dict[str, float]:
    """Worst value over the fixture's images of each level's difference."""
    results: dict[str, float] = {}

    def worst(key: str, value: float) -> None:
        results[key] = max(results.get(key, value), value)

    num_images = sum(key.startswith("image_") for key in arrays)
    for index in range(num_images):
        image = torch.from_numpy(arrays[f"image_{index}"]).permute(2, 0, 1).float() / 255.0
        with torch.no_grad():
            batch = model.resize_batch([image])
            preprocessed = model.preprocess(batch.images)
            features = model.feature_extractor(preprocessed)[-1]
            predictions = model.predict(batch.images)
            fed = {name: _nchw(arrays[f"{key}_{index}"]) for name, key in HEADS.items()}
            from_reference = model.postprocess(fed, batch.resized_sizes, batch.original_sizes)
            end_to_end = model.postprocess(predictions, batch.resized_sizes,
                                           batch.original_sizes)
        worst("preprocessed_max_abs", float(
            (preprocessed - _nchw(arrays[f"preprocessed_{index}"])).abs().max()))
        worst("features_relative", _relative(features, _nchw(arrays[f"features_{index}"])))
        for name, key in HEADS.items():
            worst(f"{key}_relative", _relative(predictions[name], fed[name]))
        results.setdefault("postprocess_matched", 1.0)
        results.setdefault("end_to_end_matched", 1.0)
        results["postprocess_matched"] = min(results["postprocess_matched"],
                                             matched_share(from_reference[0], arrays, index))
        results["end_to_end_matched"] = min(results["end_to_end_matched"],
                                            matched_share(end_to_end[0], arrays, index))
        worst("num_detections_difference", abs(
            int(arrays[f"num_detections_{index}"][0]) - int(end_to_end[0]["scores"].shape[0])))
    results.update(compare_losses(model, arrays, num_images))
    return results


def compare_losses(model: CenterNet, arrays: dict[str, np.ndarray], num_images: int
                   ) -> dict[str, float]:
    """objdet's training losses against the OD API's ``loss`` (the images as one batch)."""
    images, targets = [], []
    for index in range(num_images):
        image = arrays[f"image_{index}"]
        height, width = image.shape[:2]
        images.append(torch.from_numpy(image).permute(2, 0, 1).float() / 255.0)
        normalized = torch.from_numpy(arrays[f"loss_boxes_{index}"])
        targets.append({"boxes": normalized[:, [1, 0, 3, 2]]
                        * torch.tensor([width, height, width, height]),
                        "labels": torch.from_numpy(arrays[f"loss_labels_{index}"])})
    with torch.no_grad():
        batch = model.resize_batch(images)
        predictions = model.predict(batch.images)
        losses = model.compute_loss(predictions, targets, batch)
        assigned = model.assign_targets(targets, batch, predictions[OBJECT_CENTER])
    results = {f"{key}_relative": float(abs(value - float(arrays[key.replace("/", "_")]))
                                        / abs(float(arrays[key.replace("/", "_")])))
               for key, value in losses.items()}
    results["heatmap_targets_max_abs"] = float(
        (assigned.heatmap - torch.from_numpy(arrays["center_heatmap_targets"])).abs().max())
    results["box_target_indices_equal"] = float(torch.equal(
        assigned.indices, torch.from_numpy(arrays["box_target_indices"]).long()))
    results["box_targets_max_abs"] = max(
        float((assigned.sizes - torch.from_numpy(arrays["box_target_sizes"])).abs().max()),
        float((assigned.offsets - torch.from_numpy(arrays["box_target_offsets"])).abs().max()))
    return results


FIXTURE_DIRS = sorted(path.parent for path in FIXTURES.glob("*/reference.npz"))


@pytest.fixture(scope="module", params=FIXTURE_DIRS, ids=[path.name for path in FIXTURE_DIRS])
def compared(request: pytest.FixtureRequest) -> dict[str, float]:
    model, arrays = load_fixture(request.param)
    return compare(model, arrays)


def test_fixtures_exist() -> None:
    assert FIXTURE_DIRS, f"no CenterNet parity fixtures under {FIXTURES}"


def test_preprocessing_matches_the_od_api(compared: dict[str, float]) -> None:
    assert compared["preprocessed_max_abs"] <= 1e-3  # 0..255 scale, resized in [0, 1]


def test_features_and_raw_heads_match_the_od_api(compared: dict[str, float]) -> None:
    for key in ("features_relative", "object_center_relative", "box_scale_relative",
                "box_offset_relative"):
        assert compared[key] <= RELATIVE_TOLERANCE, (key, compared[key])


def test_training_targets_match_the_od_api(compared: dict[str, float]) -> None:
    assert compared["heatmap_targets_max_abs"] <= 1e-5
    assert compared["box_target_indices_equal"] == 1.0
    assert compared["box_targets_max_abs"] <= 1e-5


def test_training_losses_match_the_od_api(compared: dict[str, float]) -> None:
    for key in ("Loss/object_center", "Loss/box/scale", "Loss/box/offset"):
        assert compared[f"{key}_relative"] <= RELATIVE_TOLERANCE, (key, compared)


def test_detections_match_the_od_api(compared: dict[str, float]) -> None:
    assert compared["postprocess_matched"] >= 0.99
    assert compared["end_to_end_matched"] >= 0.99


if __name__ == "__main__":
    print(json.dumps(compare(*load_fixture(Path(sys.argv[1])))))
