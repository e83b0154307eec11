"""The CenterNet side of ``dump_reference.py`` (reference env only).

Weights as the committed fixtures' (tests/fixtures/odapi_center_net/make_fixtures.py and
odapi_center_net_keypoints/make_fixture.py): realistic kernels and batch norms, then the
last conv of every prediction head rescaled so its outputs spread (``HEAD_SCALES``, by the
head's suffix; keypoint classes' center logits raised by ``KEYPOINT_CLASS_BIAS``). Unlike the fixtures, every output's head is scaled on its own feature
output (hourglass-104 has two; eval uses the last one).

Arrays per image ``i`` (maps NHWC): ``head_<name>_i`` for every prediction head of the last
feature output, ``<name>`` the OD API's prediction key with ``/`` written ``.``
(``head_object_center_i``, ``head_box.scale_i``, ``head_box.offset_i``,
``head_<task>.keypoint.heatmap_i`` ...), and ``postprocess``'s ``detection_boxes_i``
(normalized to the image), ``detection_scores_i``, ``detection_classes_i`` (0-based),
``num_detections_i`` (+ ``detection_keypoints_i`` [1, D, K, 2] normalized (y, x),
``detection_keypoint_scores_i`` [1, D, K] with keypoint tasks).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf
from person_keypoints import PERSON_KEYPOINTS_LABEL_MAP, PLACEHOLDER
from realistic_weights import VariableInitializer, calibrate_batch_norms, initialize

# head suffix -> (kernel std target, bias mean, bias std) of its raw outputs (the fixtures')
HEAD_SCALES = {"object_center": (2.0, -4.0, 0.5), "box/scale": (3.0, 6.0, 1.0),
               "box/offset": (0.3, 0.5, 0.1), "keypoint/heatmap": (2.0, -3.0, 0.5),
               "keypoint/offset": (0.3, 0.5, 0.1), "keypoint/regression": (2.5, 0.0, 1.5)}
# Added to the center logits' bias of each keypoint task's class: with 90 classes, most of
# the top-100 peaks must be of that class for the keypoints to be compared at all.
KEYPOINT_CLASS_BIAS = 4.0


def fill_keypoint_label_map(pipeline: object, output_dir: Path) -> None:
    """Points a placeholder ``keypoint_label_map_path`` at the person keypoints label map,
    written into ``output_dir``."""
    center_net = pipeline.model.center_net  # type: ignore[attr-defined]
    if center_net.keypoint_estimation_task and (
            not center_net.keypoint_label_map_path
            or center_net.keypoint_label_map_path.startswith(PLACEHOLDER)):
        path = output_dir / "person_keypoints_label_map.pbtxt"
        path.write_text(PERSON_KEYPOINTS_LABEL_MAP)
        center_net.keypoint_label_map_path = str(path.resolve())


def _scales(name: str) -> tuple[float, float, float]:
    for suffix, scales in HEAD_SCALES.items():
        if name == suffix or name.endswith("/" + suffix):
            return scales
    raise RuntimeError(f"prediction head {name!r}: no output scale known (HEAD_SCALES)")


def scale_heads(model: tf.Module, preprocessed: tf.Tensor, seed: int) -> dict[str, list[float]]:
    """Rescales each head's last conv (on its own feature output) to its HEAD_SCALES std over
    the calibration batch, then draws its bias; returns the std measured before."""
    features = model._feature_extractor(preprocessed)  # one map per output
    init = VariableInitializer(seed + 1)
    measured: dict[str, list[float]] = {}
    for name, nets in model._prediction_head_dict.items():
        std_target, bias_mean, bias_std = _scales(name)
        measured[name] = []
        for net, feature in zip(nets, features, strict=True):
            last = net.layers[-1]
            last.bias.assign(tf.zeros_like(last.bias))
            std = float(tf.math.reduce_std(net(feature)))
            measured[name].append(std)
            last.kernel.assign(last.kernel * (std_target / max(std, 1e-12)))
            bias = init.rng(last.bias).normal(bias_mean, bias_std, last.bias.shape)
            if name == "object_center":
                for params in (model._kp_params_dict or {}).values():
                    bias[params.class_id] += KEYPOINT_CLASS_BIAS
            last.bias.assign(bias.astype(np.float32))
    return measured


def realistic_weights(model: tf.Module, images: tf.Tensor, shapes: tf.Tensor, seed: int) -> dict:
    unclaimed = initialize(model, seed)
    batch_norms = calibrate_batch_norms(model, images, shapes)
    head_std = scale_heads(model, images, seed)
    return {"num_variables": len(model.variables), "batch_norms": batch_norms,
            "uniform_0.5_1.5_variables": unclaimed, "head_output_std_before_scaling": head_std}


def run_image(model: tf.Module, image: np.ndarray, index: int
              ) -> tuple[dict[str, np.ndarray], list[np.ndarray]]:
    """The arrays of the module docstring for one image, and its feature maps (last output;
    for the input-dependence check, not stored)."""
    preprocessed, true_shapes = model.preprocess(tf.cast(tf.constant(image[None]), tf.float32))
    predictions = model.predict(preprocessed, true_shapes)
    detections = model.postprocess(predictions, true_shapes)
    arrays = {"image": image, "preprocessed": preprocessed, "true_image_shape": true_shapes}
    for name in model._prediction_head_dict:
        arrays[f"head_{name.replace('/', '.')}"] = predictions[name][-1]
    for key in ("detection_boxes", "detection_scores", "detection_classes", "num_detections",
                "detection_keypoints", "detection_keypoint_scores"):
        if key in detections:
            arrays[key] = detections[key]
    return ({f"{key}_{index}": np.asarray(value) for key, value in arrays.items()},
            [np.asarray(predictions["extracted_features"][-1])])


def describe(model: tf.Module, config: object) -> dict:
    """meta.json's family-specific part."""
    center_net = config.center_net  # type: ignore[attr-defined]
    return {"num_classes": center_net.num_classes,
            "heads": sorted(model._prediction_head_dict),
            "keypoint_tasks": [task.task_name for task in center_net.keypoint_estimation_task]}
