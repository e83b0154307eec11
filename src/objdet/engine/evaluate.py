"""Run a detector over an eval input and feed every metrics_set evaluator."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from objdet.engine.trainer import Batch
from objdet.evaluation.base import DetectionEvaluator, GroundTruth
from objdet.structures.detections import Detections

# keypoints [N, K, 2] (x, y) pixels, NaN unknown, and keypoint_visibilities [N, K] where the
# input reader sets num_keypoints (coco_keypoint_metrics match the model's "keypoints")
_OPTIONAL_GT_FIELDS = ("difficult", "is_crowd", "group_of", "keypoints", "keypoint_visibilities")


@dataclass
class EvalInputs:
    """What evaluating on the first eval_input_reader needs, built from the config once."""

    loader: Iterable[Batch]
    categories: list[dict[str, Any]]
    evaluators: list[DetectionEvaluator]
    max_images: int | None  # eval_config.num_examples (0: all)


def build_eval_inputs(config: Any, num_workers: int = 0) -> EvalInputs | None:
    """Loader, categories and metrics_set evaluators of a pipeline config; None without an
    eval_input_reader."""
    from objdet.data.dataset import build_data_loader, build_dataset
    from objdet.evaluation.registry import build_evaluators_from_eval_config
    from objdet.structures.label_map import load_label_map

    if not config.eval_input_reader:
        return None
    reader = config.eval_input_reader[0]
    dataset = build_dataset(reader, training=False, config_field="eval_input_reader[0]")
    loader = build_data_loader(dataset, batch_size=1, num_workers=num_workers, training=False)
    categories = load_label_map(reader.label_map_path).categories() if reader.label_map_path else []
    evaluators = build_evaluators_from_eval_config(config.eval_config, categories)
    return EvalInputs(loader, categories, evaluators, config.eval_config.num_examples or None)


def ground_truth_from_target(target: dict[str, Tensor]) -> GroundTruth:
    """A collated target dict (boxes [N, 4] x1y1x2y2 pixels, labels [N], flags, instance
    masks [N, H, W] where the input reader loads them) -> GroundTruth."""
    optional = {name: target[name].cpu().numpy() for name in _OPTIONAL_GT_FIELDS if name in target}
    if "masks" in target:
        optional["masks"] = target["masks"].cpu().numpy().astype("uint8")
    return GroundTruth(boxes=target["boxes"].cpu().numpy(), labels=target["labels"].cpu().numpy(),
                       **optional)


@torch.no_grad()
def evaluate_detector(
    model: nn.Module, batches: Iterable[Batch], evaluators: Sequence[DetectionEvaluator],
    device: torch.device | str = "cpu", max_images: int | None = None,
    on_prediction: Callable[[int, Tensor, dict[str, Tensor]], None] | None = None,
) -> dict[str, float]:
    """Predict every image of ``batches`` (eval mode), then compute each evaluator's metrics.

    Images are numbered in iteration order; metrics of all evaluators are merged into one dict.
    ``on_prediction(image_id, image, output)`` sees each image and its detections (e.g. to
    draw a few for TensorBoard).
    """
    was_training = model.training
    model.eval()
    for evaluator in evaluators:
        evaluator.clear()
    image_id = 0
    try:
        for images, targets in batches:
            outputs = model([image.to(device) for image in images])
            for image, target, output in zip(images, targets, outputs):
                if on_prediction is not None:
                    on_prediction(image_id, image, output)
                ground_truth = ground_truth_from_target(target)
                detections = Detections.from_model_output({k: v.cpu() for k, v in output.items()})
                for evaluator in evaluators:
                    evaluator.add_ground_truth(image_id, ground_truth)
                    evaluator.add_detections(image_id, detections)
                image_id += 1
                if max_images is not None and image_id >= max_images:
                    break
            if max_images is not None and image_id >= max_images:
                break
    finally:
        model.train(was_training)
    metrics: dict[str, float] = {}
    for evaluator in evaluators:
        metrics.update(evaluator.evaluate())
    return metrics
