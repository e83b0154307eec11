"""The Faster R-CNN / Mask R-CNN side of ``dump_reference.py`` (reference env only).

Weights and levels are the committed tiny fixtures' (tests/fixtures/odapi_faster_rcnn,
odapi_faster_rcnn_fpn and odapi_mask_rcnn ``make_fixture.py``), reused here at the configs' full size: realistic
kernels and batch norms, the RPN objectness and second-stage class logits scaled to std 2
(and the mask logits with a mask head). Arrays per image ``i`` (boxes (ymin, xmin, ymax,
xmax); maps NHWC):

- ``anchors_i`` [A, 4] canvas pixels (clipped as the OD API's eval), ``rpn_box_encodings_i``
  [1, A, 4], ``rpn_objectness_i`` [1, A, 2] logits;
- ``num_proposals_i`` [1], ``proposal_boxes_i`` [1, P, 4] canvas pixels, zero-padded;
- ``refined_box_encodings_i`` [P, C', 4], ``class_predictions_i`` [P, K + 1] logits;
- ``detection_boxes_i`` (normalized to the image), ``detection_scores_i``,
  ``detection_classes_i`` (0-based), ``num_detections_i``;
- with a mask head: ``detection_masks_i`` [1, D, mh, mw] (probabilities over each box) and
  ``reframed_masks_i`` [S, H, W] uint16 (value * 65535), the first ``REFRAMED_DETECTIONS``
  masks reframed to the input image as eval_util does before the COCO mask metrics.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import tensorflow as tf

HERE = Path(__file__).resolve().parent
FIXTURES = HERE.parents[1] / "tests" / "fixtures"
REFRAMED_DETECTIONS = 20


def _load(path: Path, name: str) -> ModuleType:
    """Imports a fixture script under a unique module name (several are called make_fixture)."""
    sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# The mask fixture imports the Faster R-CNN one as ``make_fixture``: load that one first.
frcnn_fixture = _load(FIXTURES / "odapi_faster_rcnn" / "make_fixture.py", "make_fixture")
mask_fixture = _load(FIXTURES / "odapi_mask_rcnn" / "make_fixture.py", "odapi_mask_rcnn_fixture")
# after odapi, which the fixtures import
from object_detection.utils import ops


def has_masks(model: tf.Module) -> bool:
    """Three stages: the mask head runs on the detections (the configs' Mask R-CNN)."""
    return bool(model._number_of_stages == 3)


def realistic_weights(model: tf.Module, images: tf.Tensor, shapes: tf.Tensor, seed: int) -> dict:
    """The tiny fixtures' weights (seeded by ``seed``) on a model of any size; an FPN's RPN
    (one objectness head per level) as tests/fixtures/odapi_faster_rcnn_fpn's."""
    frcnn_fixture.SEED = seed
    rpn_class_heads = model._first_stage_box_predictor._prediction_heads[
        "class_predictions_with_background"]
    if len(rpn_class_heads) > 1:
        fpn_fixture = _load(FIXTURES / "odapi_faster_rcnn_fpn" / "make_fixture.py",
                            "odapi_faster_rcnn_fpn_fixture")
        fpn_fixture.SEED = seed
        fpn_fixture.realistic_weights(model, images, shapes)
    else:
        frcnn_fixture.realistic_weights(model, images, shapes)
    if has_masks(model):
        mask_fixture.scale_mask_logits(model, images, shapes)
    return {"num_variables": len(model.variables), "logit_std": frcnn_fixture.LOGIT_STD,
            "mask_logits_scaled": has_masks(model)}


def run_image(model: tf.Module, image: np.ndarray, index: int
              ) -> tuple[dict[str, np.ndarray], list[np.ndarray]]:
    """The arrays of the module docstring for one image, and its feature maps (the RPN's
    input: for the input-dependence check, not stored)."""
    preprocessed, true_shapes = model.preprocess(tf.cast(tf.constant(image[None]), tf.float32))
    predictions = model.predict(preprocessed, true_shapes)
    rpn_features = predictions["rpn_features_to_crop"][0]  # finest level; postprocess pops it
    detections = model.postprocess(predictions, true_shapes)
    arrays = {
        "image": image,
        "preprocessed": preprocessed,
        "true_image_shape": true_shapes,
        "anchors": predictions["anchors"],
        "rpn_box_encodings": predictions["rpn_box_encodings"],
        "rpn_objectness": predictions["rpn_objectness_predictions_with_background"],
        "num_proposals": predictions["num_proposals"],
        "proposal_boxes": predictions["proposal_boxes"],
        "refined_box_encodings": predictions["refined_box_encodings"],
        "class_predictions": predictions["class_predictions_with_background"],
    }
    for key in ("detection_boxes", "detection_scores", "detection_classes", "num_detections"):
        arrays[key] = detections[key]
    if has_masks(model):
        shown = min(int(detections["num_detections"][0]), REFRAMED_DETECTIONS)
        reframed = ops.reframe_box_masks_to_image_masks(
            detections["detection_masks"][0, :shown], detections["detection_boxes"][0, :shown],
            image.shape[0], image.shape[1])  # [S, H, W]
        arrays["detection_masks"] = detections["detection_masks"]
        arrays["reframed_masks"] = np.round(np.asarray(reframed) * 65535.0).astype(np.uint16)
    return ({f"{key}_{index}": np.asarray(value) for key, value in arrays.items()},
            [np.asarray(rpn_features)])


def describe(model: tf.Module, config: object) -> dict:
    """meta.json's family-specific part."""
    frcnn = config.faster_rcnn  # type: ignore[attr-defined]
    return {"num_classes": frcnn.num_classes, "masks": has_masks(model),
            "first_stage_max_proposals": frcnn.first_stage_max_proposals,
            "anchors": {"order": "ymin, xmin, ymax, xmax",
                        "relative_to": "pixels of the preprocessed (resized, padded) image",
                        "normalized": False}}
