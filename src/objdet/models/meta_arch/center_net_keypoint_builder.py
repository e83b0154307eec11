"""``keypoint_estimation_task`` messages -> :class:`KeypointTask` (the OD API's
``model_builder.keypoint_proto_to_params`` and the checks of ``_build_center_net_model``).

Every field of ``CenterNet.KeypointEstimation`` is read here or refused with a ConfigError
naming it. The keypoint label map (``keypoint_label_map_path``) gives each task its class
(the item named ``keypoint_class_name``) and keypoints (that item's ``keypoints``: ids and
labels, in the file's order).
"""

from __future__ import annotations

import logging

from google.protobuf.message import Message

from objdet.errors import ConfigError, LabelMapError
from objdet.models.center_net_losses import L1LocalizationLoss, PenaltyReducedLogisticFocalLoss
from objdet.models.config_checks import check_fields, which_oneof
from objdet.models.meta_arch.center_net_keypoints import RANKING_MODES, KeypointTask
from objdet.protos import center_net_pb2
from objdet.structures.label_map import LabelMap, load_label_map

logger = logging.getLogger(__name__)

KEYPOINT_STD_DEV_DEFAULT = 1.0
PLACEHOLDER = "PATH_TO_BE_CONFIGURED"
_KEYPOINT_FIELDS = {
    "task_name", "task_loss_weight", "loss", "keypoint_class_name", "keypoint_label_to_std",
    "keypoint_regression_loss_weight", "keypoint_heatmap_loss_weight",
    "keypoint_offset_loss_weight", "heatmap_bias_init", "keypoint_candidate_score_threshold",
    "num_candidates_per_keypoint", "peak_max_pool_kernel_size", "unmatched_keypoint_score",
    "box_scale", "candidate_search_scale", "candidate_ranking_mode", "score_distance_offset",
    "score_distance_multiplier", "std_dev_multiplier", "offset_peak_radius",
    "per_keypoint_offset", "clip_out_of_frame_keypoints", "rescore_instances",
    "rescoring_threshold", "heatmap_head_params", "offset_head_params", "regress_head_params",
    # Only read with predict_depth (refused below): no effect without it.
    "per_keypoint_depth", "keypoint_depth_loss_weight",
    # Only read by the 'gaussian_weighted_const' ranking of argmax_postprocessing (refused).
    "gaussian_denom_ratio",
}
_LOSS_FIELDS = {"classification_loss", "localization_loss"}


def keypoint_label_map(config: center_net_pb2.CenterNet, path: str) -> LabelMap:
    """The label map ``keypoint_label_map_path`` names (ConfigError when unset or the OD API
    configs' placeholder)."""
    label_map_path = config.keypoint_label_map_path
    field = f"{path}.keypoint_label_map_path"
    if not label_map_path or label_map_path.startswith(PLACEHOLDER):
        raise ConfigError(f"{field}: {label_map_path!r}; keypoint tasks need a label map whose "
                          "keypoint class lists its keypoints (item { ... keypoints { id: 0 "
                          "label: 'nose' } })")
    try:
        return load_label_map(label_map_path)
    except (LabelMapError, OSError) as error:
        raise ConfigError(f"{field}: {error}") from None


def build_keypoint_tasks(config: center_net_pb2.CenterNet, path: str,
                         head_params: object) -> list[tuple[KeypointTask, dict[str, tuple]]]:
    """Every ``keypoint_estimation_task`` -> (task, prediction key -> (kernel_sizes,
    num_filters, bias_fill) of its head). ``head_params(owner, field, path)`` reads a
    ``PredictionHeadParams`` (the builder's, with the OD API's [3], [256] default)."""
    label_map = keypoint_label_map(config, path)
    by_name = {item.name: item for item in label_map.items if item.keypoints}
    built: list[tuple[KeypointTask, dict[str, tuple]]] = []
    for index, message in enumerate(config.keypoint_estimation_task):
        task_path = f"{path}.keypoint_estimation_task[{index}]"
        task = _task(message, task_path, by_name, label_map.source)
        heads = {}
        for key, field, bias in (("keypoint/heatmap", "heatmap_head_params",
                                  message.heatmap_bias_init),
                                 ("keypoint/regression", "regress_head_params", None),
                                 ("keypoint/offset", "offset_head_params", None)):
            kernel_sizes, num_filters = head_params(message, field, f"{task_path}.{field}")  # type: ignore[operator]
            heads[task.head_name(key)] = (kernel_sizes, num_filters, bias)
        built.append((task, heads))
    _check_tasks([task for task, _ in built], path)
    return built


def _task(message: center_net_pb2.CenterNet.KeypointEstimation, path: str,
          by_name: dict, source: str) -> KeypointTask:
    check_fields(message, path, _KEYPOINT_FIELDS)
    for name in ("predict_depth", "argmax_postprocessing"):
        if getattr(message, name):
            raise ConfigError(f"{path}.{name}: true is not supported by objdet yet")
    if not message.task_name or "." in message.task_name:
        raise ConfigError(f"{path}.task_name: {message.task_name!r}; expected a non-empty name "
                          "without '.'")
    if message.keypoint_class_name not in by_name:
        raise ConfigError(f"{path}.keypoint_class_name: {message.keypoint_class_name!r} is not "
                          f"an item with keypoints in {source}; items with keypoints: "
                          f"{sorted(by_name) or '(none)'}")
    if message.candidate_ranking_mode not in RANKING_MODES:
        raise ConfigError(f"{path}.candidate_ranking_mode: {message.candidate_ranking_mode!r} "
                          f"is not supported; supported: {', '.join(RANKING_MODES)}")
    for name in ("num_candidates_per_keypoint", "offset_peak_radius",
                 "peak_max_pool_kernel_size"):
        if getattr(message, name) < (1 if name == "num_candidates_per_keypoint" else 0):
            raise ConfigError(f"{path}.{name}: {getattr(message, name)} is out of range")
    item = by_name[message.keypoint_class_name]
    labels = [label for _, label in item.keypoints]
    unknown = sorted(set(message.keypoint_label_to_std) - set(labels))
    if unknown:  # the OD API adds them to a dict it never reads: a typo, most likely
        logger.warning("%s.keypoint_label_to_std: %s are not keypoints of %r in %s (ignored, as "
                       "the OD API does); its keypoints: %s", path, unknown,
                       message.keypoint_class_name, source, labels)
    std_devs = {label: KEYPOINT_STD_DEV_DEFAULT for label in labels}
    std_devs.update(message.keypoint_label_to_std)
    return KeypointTask(
        task_name=message.task_name, class_id=item.id - 1,
        keypoint_indices=tuple(keypoint_id for keypoint_id, _ in item.keypoints),
        keypoint_std_dev=tuple(std_devs[label] for label in labels),
        heatmap_loss=_heatmap_loss(message.loss, f"{path}.loss"),
        localization_loss=_localization_loss(message.loss, f"{path}.loss"),
        task_loss_weight=message.task_loss_weight,
        heatmap_loss_weight=message.keypoint_heatmap_loss_weight,
        offset_loss_weight=message.keypoint_offset_loss_weight,
        regression_loss_weight=message.keypoint_regression_loss_weight,
        candidate_score_threshold=message.keypoint_candidate_score_threshold,
        num_candidates=message.num_candidates_per_keypoint,
        peak_max_pool_kernel_size=message.peak_max_pool_kernel_size,
        unmatched_keypoint_score=message.unmatched_keypoint_score,
        box_scale=message.box_scale, candidate_search_scale=message.candidate_search_scale,
        candidate_ranking_mode=message.candidate_ranking_mode,
        score_distance_offset=message.score_distance_offset,
        score_distance_multiplier=message.score_distance_multiplier,
        std_dev_multiplier=message.std_dev_multiplier,
        offset_peak_radius=message.offset_peak_radius,
        per_keypoint_offset=message.per_keypoint_offset,
        clip_out_of_frame_keypoints=message.clip_out_of_frame_keypoints,
        rescore_instances=message.rescore_instances,
        rescoring_threshold=message.rescoring_threshold,
    )


def _heatmap_loss(loss: Message, path: str) -> PenaltyReducedLogisticFocalLoss:
    check_fields(loss, path, _LOSS_FIELDS)
    kind = which_oneof(loss.classification_loss, "classification_loss",  # type: ignore[attr-defined]
                       f"{path}.classification_loss", {"penalty_reduced_logistic_focal_loss"})
    focal = getattr(loss.classification_loss, kind)  # type: ignore[attr-defined]
    return PenaltyReducedLogisticFocalLoss(alpha=focal.alpha, beta=focal.beta)


def _localization_loss(loss: Message, path: str) -> L1LocalizationLoss:
    which_oneof(loss.localization_loss, "localization_loss",  # type: ignore[attr-defined]
                f"{path}.localization_loss", {"l1_localization_loss"})
    return L1LocalizationLoss()


def _check_tasks(tasks: list[KeypointTask], path: str) -> None:
    """The OD API's checks (one task per class, no keypoint in two tasks) and objdet's: task
    names unique, keypoint ids 0..K-1 (the output's keypoint dimension)."""
    names = [task.task_name for task in tasks]
    classes = [task.class_id for task in tasks]
    indices = [index for task in tasks for index in task.keypoint_indices]
    field = f"{path}.keypoint_estimation_task"
    if len(set(names)) != len(names):
        raise ConfigError(f"{field}: task names {names} repeat")
    if len(set(classes)) != len(classes):
        raise ConfigError(f"{field}: several tasks for one class (0-based class ids {classes})")
    if len(set(indices)) != len(indices):
        raise ConfigError(f"{field}: keypoint ids {indices} are used more than once")
    if sorted(indices) != list(range(len(indices))):
        raise ConfigError(f"{field}: the tasks' keypoint ids {sorted(indices)} must be "
                          f"0..{len(indices) - 1} (they index the keypoint outputs)")


__all__ = ["KEYPOINT_STD_DEV_DEFAULT", "build_keypoint_tasks", "keypoint_label_map"]
