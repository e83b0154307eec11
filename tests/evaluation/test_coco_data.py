"""Random COCO ground truth / results for the COCO evaluation tests (and a check of them).

The data is built to hit pycocotools' corner cases: crowds (uncompressed RLE), compressed
RLE and polygon masks, GT ``area`` unlike the box area, images without ground truth or
without detections, categories without ground truth or without detections, tied scores,
more than 100 detections in an image, and detections in all area ranges.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pycocotools import mask as coco_mask

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

CATEGORY_IDS = (1, 3, 4, 7, 9)  # 9 never has ground truth; 4 never has detections


def _polygon(rng: np.random.Generator, box: list[float]) -> list[float]:
    """A random star-shaped polygon inside an [x, y, w, h] box."""
    x, y, w, h = box
    count = int(rng.integers(3, 9))
    angles = np.sort(rng.uniform(0, 2 * np.pi, count))
    radius = rng.uniform(0.4, 1.0, count)
    xs = x + w / 2 + np.cos(angles) * radius * w / 2
    ys = y + h / 2 + np.sin(angles) * radius * h / 2
    return np.round(np.stack([xs, ys], 1).reshape(-1), 2).tolist()


def _random_box(rng: np.random.Generator, width: int, height: int) -> list[float]:
    w = float(rng.uniform(1, width * rng.choice([0.2, 0.5, 1.0])))
    h = float(rng.uniform(1, height * rng.choice([0.2, 0.5, 1.0])))
    x = float(rng.uniform(0, max(width - w, 1)))
    y = float(rng.uniform(0, max(height - h, 1)))
    return [round(x, 2), round(y, 2), round(w, 2), round(h, 2)]


def _segmentation(rng: np.random.Generator, box: list[float], height: int, width: int,
                  style: str) -> Any:
    polygon = _polygon(rng, box)
    if style == "polygon":
        return [polygon]
    rle = coco_mask.merge(coco_mask.frPyObjects([polygon], height, width))
    if style == "uncompressed":
        counts = coco_mask.decode(rle).ravel(order="F")
        return {"size": [height, width], "counts": _runs(counts)}
    return {"size": [height, width], "counts": rle["counts"].decode("ascii")}


def _runs(flat: np.ndarray) -> list[int]:
    """Uncompressed RLE counts of a flat 0/1 column-major mask."""
    padded = np.concatenate([[0], flat, [0]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    boundaries = np.concatenate([[0], edges, [flat.size]])
    return np.diff(boundaries).tolist()


def _keypoints(rng: np.random.Generator, box: list[float], labeled: bool) -> list[float]:
    x, y, w, h = box
    xs = rng.uniform(x, x + w, 17).round(1)
    ys = rng.uniform(y, y + h, 17).round(1)
    visibility = rng.choice([0, 1, 2], 17) if labeled else np.zeros(17, dtype=int)
    if labeled and not visibility.any():
        visibility[0] = 2
    return np.stack([xs, ys, visibility], 1).reshape(-1).tolist()


def make_dataset(seed: int, num_images: int = 60, keypoints: bool = False
                 ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A random (ground truth, results) pair in COCO JSON form."""
    rng = np.random.default_rng(seed)
    images, annotations, results = [], [], []
    categories = [{"id": c, "name": f"class{c}"} for c in CATEGORY_IDS]
    for image_id in range(1, num_images + 1):
        width, height = int(rng.integers(20, 140)), int(rng.integers(20, 140))
        images.append({"id": image_id * 7, "width": width, "height": height})
        num_gt = 0 if image_id % 9 == 0 else int(rng.integers(0, 12))
        gt_boxes = []
        for _ in range(num_gt):
            box = _random_box(rng, width, height)
            category = int(rng.choice([1, 3, 4, 7]))
            crowd = int(rng.random() < 0.1)
            style = "uncompressed" if crowd else str(rng.choice(["polygon", "polygon", "rle"]))
            labeled = rng.random() < 0.8
            annotation = {
                "id": len(annotations) + 1, "image_id": image_id * 7, "category_id": category,
                "bbox": box, "iscrowd": crowd,
                "area": round(box[2] * box[3] * float(rng.uniform(0.4, 1.1)), 2),
                "segmentation": _segmentation(rng, box, height, width, style),
            }
            if keypoints:
                annotation["keypoints"] = _keypoints(rng, box, labeled)
                annotation["num_keypoints"] = int(np.count_nonzero(annotation["keypoints"][2::3]))
            annotations.append(annotation)
            gt_boxes.append((box, category, annotation.get("keypoints")))
        num_dt = 0 if image_id % 11 == 0 else int(rng.integers(0, 20 if image_id % 5 else 150))
        for index in range(num_dt):
            if gt_boxes and index < 3 * len(gt_boxes):
                box, category, gt_keypoints = gt_boxes[index % len(gt_boxes)]
                jitter = rng.normal(0, 0.08, 4) * np.array([box[2], box[3], box[2], box[3]])
                box = np.round(np.array(box) + jitter, 2).tolist()
                box[2], box[3] = max(box[2], 0.5), max(box[3], 0.5)
                if rng.random() < 0.15:
                    category = int(rng.choice([1, 3, 7, 9]))
                category = 1 if category == 4 and rng.random() < 0.5 else category
            else:
                box, category = _random_box(rng, width, height), int(rng.choice([1, 3, 7, 9]))
                gt_keypoints = None
            if category == 4:
                category = 7
            result = {"image_id": image_id * 7, "category_id": category, "bbox": box,
                      "score": round(float(rng.random()), 1)}  # 1 decimal: many ties
            result["segmentation"] = _segmentation(rng, box, height, width, "rle")
            if keypoints and gt_keypoints is not None:  # near the true keypoints
                points = np.array(gt_keypoints).reshape(17, 3)
                points[:, :2] += rng.normal(0, 1.5, (17, 2)).round(1)
                result["keypoints"] = points.reshape(-1).tolist()
            elif keypoints:
                result["keypoints"] = _keypoints(rng, box, True)
            results.append(result)
    return {"images": images, "annotations": annotations, "categories": categories}, results


def write_dataset(directory: Path, ground_truth: dict, results: list) -> tuple[Path, Path]:
    gt_path, dt_path = directory / "gt.json", directory / "dt.json"
    gt_path.write_text(json.dumps(ground_truth))
    dt_path.write_text(json.dumps(results))
    return gt_path, dt_path


def pycocotools_eval(gt_path: Path, dt_path: Path, iou_type: str, use_cats: bool = True):
    """pycocotools' COCOeval after evaluate/accumulate/summarize, silenced."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth = COCO(str(gt_path))
        detections = ground_truth.loadRes(str(dt_path))
        evaluator = COCOeval(ground_truth, detections, iou_type)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator


def test_dataset_hits_the_corner_cases() -> None:
    ground_truth, results = make_dataset(seed=0)
    per_image = np.bincount([r["image_id"] // 7 for r in results], minlength=61)
    assert per_image.max() > 100
    assert any(a["iscrowd"] for a in ground_truth["annotations"])
    assert not any(a["category_id"] == 9 for a in ground_truth["annotations"])
    assert not any(r["category_id"] == 4 for r in results)
    scores = [r["score"] for r in results]
    assert len(set(scores)) < len(scores)
    gt_images = {a["image_id"] for a in ground_truth["annotations"]}
    assert len(gt_images) < len(ground_truth["images"])
