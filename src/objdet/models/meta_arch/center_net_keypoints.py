"""CenterNet keypoint estimation as the OD API's ``CenterNetMetaArch`` runs it: per keypoint
task (``KeypointEstimationParams``) the training targets of ``CenterNetKeypointTargetAssigner``
and, at inference, ``_postprocess_keypoints_multi_class``: keypoint candidates from the
heatmap peaks (``prediction_tensors_to_keypoint_candidates``), keypoints regressed from each
object center (``regressed_keypoints_at_object_centers``) snapped to a nearby candidate
(``refine_keypoints``), normalized (``convert_strided_predictions_to_normalized_keypoints``)
and the instance rescoring (``_rescore_instances``).

Frames: "output pixels" are the extractor output's rows/columns (canvas / stride, as the
OD API's ``to_absolute_coordinates`` with ``max(canvas // stride, 1)``); keypoint
coordinates inside this module are ``(y, x)`` as the OD API's; the model converts to
objdet's ``(x, y)`` input-image pixels at the edge.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from objdet.models.layers.padding import pad_same
from objdet.models.meta_arch import center_net_targets as targets_lib

KEYPOINT_HEATMAP, KEYPOINT_OFFSET, KEYPOINT_REGRESSION = (
    "keypoint/heatmap", "keypoint/offset", "keypoint/regression")
RANKING_MODES = ("min_distance", "score_distance_ratio", "score_scaled_distance_ratio",
                 "gaussian_weighted")
PEAK_EPSILON = 1e-6
INVALID_DISTANCE = 1e5  # the OD API's max_dist for padded candidates
BOX_SIGMA_MIN_IOU = 0.7  # the OD API's min_overlap for keypoint Gaussians


@dataclass(frozen=True)
class KeypointTask:
    """One ``keypoint_estimation_task`` (the OD API's ``KeypointEstimationParams``).

    ``class_id`` is 0-based; ``keypoint_indices`` index the ground truth's keypoints (the
    label map's keypoint ids) and the output's keypoint dimension; ``keypoint_std_dev`` is
    per keypoint, in units of the box's Gaussian sigma."""

    task_name: str
    class_id: int
    keypoint_indices: tuple[int, ...]
    keypoint_std_dev: tuple[float, ...]
    heatmap_loss: nn.Module = field(compare=False)
    localization_loss: nn.Module = field(compare=False)
    task_loss_weight: float = 1.0
    heatmap_loss_weight: float = 1.0
    offset_loss_weight: float = 1.0
    regression_loss_weight: float = 1.0
    candidate_score_threshold: float = 0.1
    num_candidates: int = 100
    peak_max_pool_kernel_size: int = 3
    unmatched_keypoint_score: float = 0.1
    box_scale: float = 1.2
    candidate_search_scale: float = 0.3
    candidate_ranking_mode: str = "min_distance"
    score_distance_offset: float = 1.0
    score_distance_multiplier: float = 0.1
    std_dev_multiplier: float = 1.0
    offset_peak_radius: int = 0
    per_keypoint_offset: bool = False
    clip_out_of_frame_keypoints: bool = False
    rescore_instances: bool = False
    rescoring_threshold: float = 0.0

    @property
    def num_keypoints(self) -> int:
        return len(self.keypoint_indices)

    def head_name(self, head: str) -> str:
        """The OD API's prediction key ``<task_name>/<head>``."""
        return f"{self.task_name}/{head}"

    def head_channels(self) -> dict[str, int]:
        """Prediction key -> output channels of the task's three heads."""
        offsets = 2 * self.num_keypoints if self.per_keypoint_offset else 2
        return {self.head_name(KEYPOINT_HEATMAP): self.num_keypoints,
                self.head_name(KEYPOINT_REGRESSION): 2 * self.num_keypoints,
                self.head_name(KEYPOINT_OFFSET): offsets}


# ----------------------------------------------------------------------------- targets

@dataclass
class ImageKeypoints:
    """One image's ground truth for one task, in output pixels: ``keypoints [N, J, 2]``
    (y, x; 0 where unknown), ``weights [N, J]`` (class member x box weight x labelled),
    ``boxes [N, 4]`` (ymin, xmin, ymax, xmax)."""

    keypoints: Tensor
    weights: Tensor
    boxes: Tensor


def task_keypoints(task: KeypointTask, keypoints: Tensor, visible: Tensor, classes: Tensor,
                   box_weights: Tensor, boxes: Tensor) -> ImageKeypoints:
    """``_preprocess_keypoints_and_weights``: output-pixel ``keypoints [N, K_total, 2]`` (y, x;
    NaN unknown), ``visible [N, K_total]``, 0-based ``classes [N]``, ``box_weights [N]``,
    output-pixel ``boxes [N, 4]`` -> the task's :class:`ImageKeypoints`."""
    selected = keypoints[:, list(task.keypoint_indices)]  # [N, J, 2]
    labelled = ~torch.isnan(selected).any(dim=2) & visible[:, list(task.keypoint_indices)]
    member = (classes == task.class_id).to(box_weights)  # [N]
    weights = member[:, None] * box_weights[:, None] * labelled.to(box_weights)  # [N, J]
    return ImageKeypoints(torch.nan_to_num(selected, nan=0.0), weights, boxes)


def keypoint_heatmap(task: KeypointTask, image: ImageKeypoints, out_size: tuple[int, int]
                     ) -> tuple[Tensor, Tensor, Tensor]:
    """``assign_keypoint_heatmap_targets`` for one image: (``heatmap [h, w, J]``, keypoint
    count per type ``[J]`` (int, as the OD API truncates), ``valid [h, w, J]``: 0 inside the
    boxes of objects whose keypoint of that type has weight < 1e-3, else 1)."""
    out_height, out_width = out_size
    like = image.weights
    heatmap = like.new_zeros(out_height, out_width, task.num_keypoints)
    valid = like.new_ones(out_height, out_width, task.num_keypoints)
    if image.keypoints.shape[0] == 0:
        return heatmap, like.new_zeros(task.num_keypoints).long(), valid
    heights = image.boxes[:, 2] - image.boxes[:, 0]
    widths = image.boxes[:, 3] - image.boxes[:, 1]
    box_sigma = targets_lib.gaussian_sigma(heights, widths, BOX_SIGMA_MIN_IOU)  # [N]
    sigma = like.new_tensor(task.keypoint_std_dev)[None, :] * box_sigma[:, None]  # [N, J]
    rows = torch.arange(out_height, device=like.device, dtype=like.dtype).view(-1, 1, 1, 1)
    columns = torch.arange(out_width, device=like.device, dtype=like.dtype).view(1, -1, 1, 1)
    squared = ((columns - torch.floor(image.keypoints[:, :, 1])) ** 2
               + (rows - torch.floor(image.keypoints[:, :, 0])) ** 2)  # [h, w, N, J]
    gaussian = torch.exp(-squared / (2 * sigma * sigma)) * image.weights  # [h, w, N, J]
    heatmap = gaussian.amax(dim=2).clamp(min=0.0)
    in_box = ((rows[..., 0] >= image.boxes[:, 0]) & (rows[..., 0] < image.boxes[:, 2])
              & (columns[..., 0] >= image.boxes[:, 1])
              & (columns[..., 0] < image.boxes[:, 3]))  # [h, w, N]
    blackout = image.weights < 1e-3  # [N, J]
    valid = (~(in_box[..., None] & blackout)).all(dim=2).to(like)  # [h, w, J]
    counts = image.weights.sum(dim=0).long()  # tf.cast(float -> int32) truncates
    return heatmap, counts, valid


def _neighbors(radius: int, device: torch.device) -> Tensor:
    """``_get_yx_indices_offset_by_radius``: ``[M, 2]`` (dy, dx) within ``radius``."""
    steps = range(-radius, radius + 1)
    pairs = [(dy, dx) for dy in steps for dx in steps if dy * dy + dx * dx <= radius * radius]
    return torch.tensor(pairs, dtype=torch.float32, device=device)


def surrounding_targets(sources: Tensor, targets: Tensor, out_size: tuple[int, int],
                        radius: int) -> tuple[Tensor, Tensor, Tensor]:
    """``get_surrounding_grids`` + ``compute_floor_offsets_with_indices``: per source point
    ``[P, 2]`` (y, x) the pixels within ``radius`` of its floor -> (``indices [P, M, 2]``
    long, ``offsets [P, M, 2]`` = target - pixel, ``inside [P, M]``); pixels outside the
    map are (0, 0) and not inside."""
    grid = torch.floor(sources)[:, None, :] + _neighbors(radius, sources.device).to(sources)
    limits = sources.new_tensor(out_size)
    inside = ((grid >= 0) & (grid < limits)).all(dim=2)  # [P, M]
    grid = torch.where(inside[..., None], grid, torch.zeros_like(grid))
    offsets = targets[:, None, :] - torch.floor(grid)
    return grid.long(), offsets, inside


@dataclass
class SparseTargets:
    """Gathered regression targets: ``indices [T, 4]`` (image, y, x, keypoint type),
    ``values [T, 2]`` (y, x), ``weights [T]``."""

    indices: Tensor
    values: Tensor
    weights: Tensor


def offset_and_regression_targets(task: KeypointTask, image: ImageKeypoints, image_index: int,
                                  out_size: tuple[int, int]
                                  ) -> tuple[SparseTargets, SparseTargets]:
    """``assign_keypoints_offset_targets`` and ``assign_joint_regression_targets`` for one
    image: the sub-pixel offset of each keypoint at the pixels around it, and the keypoint
    relative to the pixels around its box center."""
    count, num_types = image.weights.shape
    types = torch.arange(num_types, device=image.weights.device).repeat(count)  # [N * J]
    flat_keypoints = image.keypoints.reshape(-1, 2)  # [N * J, 2]
    flat_weights = image.weights.reshape(-1)
    centers = torch.stack([(image.boxes[:, 0] + image.boxes[:, 2]) / 2,
                           (image.boxes[:, 1] + image.boxes[:, 3]) / 2], dim=1)  # [N, 2]
    results = []
    for sources in (flat_keypoints, centers.repeat_interleave(num_types, dim=0)):
        indices, values, inside = surrounding_targets(sources, flat_keypoints, out_size,
                                                      task.offset_peak_radius)
        num_neighbors = indices.shape[1]
        batch = torch.full_like(indices[..., :1], image_index)
        channel = types[:, None, None].expand(-1, num_neighbors, 1)
        results.append(SparseTargets(
            indices=torch.cat([batch, indices, channel], dim=2).reshape(-1, 4),
            values=values.reshape(-1, 2),
            weights=(inside.to(flat_weights) * flat_weights[:, None]).reshape(-1)))
    return results[0], results[1]


def concat_sparse(parts: list[SparseTargets]) -> SparseTargets:
    return SparseTargets(torch.cat([part.indices for part in parts]),
                         torch.cat([part.values for part in parts]),
                         torch.cat([part.weights for part in parts]))


def gather_pairs(prediction: Tensor, indices: Tensor, per_type: bool) -> Tensor:
    """``[B, C, h, w]`` head output at ``indices [T, 4]`` -> ``[T, 2]`` (y, x): channels
    (2k, 2k + 1) of keypoint type k with ``per_type``, else channels (0, 1)."""
    pairs = prediction.reshape(prediction.shape[0], -1, 2, *prediction.shape[2:])  # [B, C/2, 2, h, w]
    channel = indices[:, 3] if per_type else torch.zeros_like(indices[:, 3])
    return pairs[indices[:, 0], channel, :, indices[:, 1], indices[:, 2]]


# ------------------------------------------------------------------------ postprocessing

def peak_candidates(task: KeypointTask, heatmap_logits: Tensor, offsets: Tensor
                    ) -> tuple[Tensor, Tensor, Tensor]:
    """``prediction_tensors_to_keypoint_candidates`` (``top_k_feature_map_locations`` per
    channel): heatmap logits ``[B, J, h, w]`` and offsets ``[B, 2 or 2J, h, w]`` ->
    candidates ``[B, C, J, 2]`` (y, x output pixels), scores ``[B, C, J]`` (descending, ties
    lowest index first, zero-padded past h * w) and the count scoring >= the threshold
    ``[B, J]``."""
    probabilities = torch.sigmoid(heatmap_logits)
    kernel = task.peak_max_pool_kernel_size
    if kernel > 1:
        padded = pad_same(probabilities, (kernel, kernel), (1, 1), value=float("-inf"))
        pooled = F.max_pool2d(padded, kernel, stride=1)
        probabilities = probabilities * ((probabilities - pooled).abs() < PEAK_EPSILON).to(
            probabilities)
    batch_size, num_types, _, width = probabilities.shape
    flat = probabilities.flatten(2)  # [B, J, h * w]
    k = min(task.num_candidates, flat.shape[2])
    if torch.compiler.is_exporting() or torch.jit.is_tracing():
        # ONNX TopK returns equal values lowest index first, as a stable sort (torch.onnx
        # exports no stable Sort); CenterNet._top_peaks does the same
        order = flat.topk(k, dim=2).indices
    else:
        order = torch.sort(flat, dim=2, descending=True, stable=True).indices[:, :, :k]
    scores = flat.gather(2, order)
    pad = task.num_candidates - k
    if pad:
        scores, order = F.pad(scores, (0, pad)), F.pad(order, (0, pad))
    rows, columns = order // width, order % width  # [B, J, C]
    pairs = offsets.reshape(batch_size, -1, 2, offsets.shape[2] * offsets.shape[3])
    type_index = (torch.arange(num_types, device=order.device)[None, :, None]
                  if pairs.shape[1] > 1 else torch.zeros_like(order[:, :1, :1]))
    batch_index = torch.arange(batch_size, device=order.device)[:, None, None]
    picked = pairs.permute(0, 1, 3, 2)[batch_index, type_index, order]  # [B, J, C, 2]
    candidates = torch.stack([rows.to(picked) + picked[..., 0],
                              columns.to(picked) + picked[..., 1]], dim=3)
    counts = (scores >= task.candidate_score_threshold).sum(dim=2)  # [B, J]
    return candidates.transpose(1, 2), scores.transpose(1, 2), counts


def regressed_keypoints(regression: Tensor, y_indices: Tensor, x_indices: Tensor) -> Tensor:
    """``regressed_keypoints_at_object_centers``: ``[B, 2J, h, w]`` at the centers ``[B, D]``
    -> ``[B, D, J, 2]`` (y, x) output pixels."""
    batch_size, channels, _, width = regression.shape
    flat = regression.flatten(2)  # [B, 2J, h * w]
    at = (y_indices * width + x_indices)[:, None, :].expand(-1, channels, -1)
    relative = flat.gather(2, at).permute(0, 2, 1).reshape(batch_size, y_indices.shape[1], -1, 2)
    return relative + torch.stack([y_indices, x_indices], dim=2)[:, :, None, :].to(relative)


def refine_keypoints(task: KeypointTask, regressed: Tensor, candidates: Tensor,
                     candidate_scores: Tensor, counts: Tensor, boxes: Tensor
                     ) -> tuple[Tensor, Tensor]:
    """``refine_keypoints``: regressed ``[B, D, J, 2]`` snapped to the candidate
    ``[B, C, J, 2]`` the ranking mode picks, unless it lies outside the box (scaled by
    ``box_scale``), scores below the threshold, or the nearest candidate is farther than
    ``candidate_search_scale`` x the scaled box's longer side. ``boxes [B, D, 4]`` output
    pixels (ymin, xmin, ymax, xmax). Returns keypoints ``[B, D, J, 2]``, scores ``[B, D, J]``."""
    num_candidates = candidates.shape[1]
    padded = (torch.arange(num_candidates, device=counts.device)[None, :, None]
              >= counts[:, None, :])  # [B, C, J]
    difference = regressed[:, :, None] - candidates[:, None]  # [B, D, C, J, 2]
    distances = (difference * difference).sum(dim=4).sqrt()
    distances = torch.where(padded[:, None], torch.full_like(distances, INVALID_DISTANCE),
                            distances)  # [B, D, C, J]
    min_distances = distances.amin(dim=2)  # [B, D, J]
    scores = candidate_scores[:, None]  # [B, 1, C, J]
    heights, widths = boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]  # [B, D]
    ranking_scores: Tensor | None = None
    if task.candidate_ranking_mode == "min_distance":
        chosen = distances.argmin(dim=2)
    elif task.candidate_ranking_mode == "score_distance_ratio":
        ranking_scores = scores / (distances + task.score_distance_offset)
    elif task.candidate_ranking_mode == "score_scaled_distance_ratio":
        offset = torch.maximum(heights, widths) * task.score_distance_multiplier
        ranking_scores = scores / (distances + offset[:, :, None, None])
    elif task.candidate_ranking_mode == "gaussian_weighted":
        box_sigma = targets_lib.gaussian_sigma(heights, widths, BOX_SIGMA_MIN_IOU)  # [B, D]
        std_dev = distances.new_tensor(task.keypoint_std_dev) * task.std_dev_multiplier
        sigma = (box_sigma[:, :, None] * std_dev)[:, :, None, :]  # [B, D, 1, J]
        ranking_scores = scores * torch.exp(-distances * distances / (2 * sigma * sigma))
    else:
        raise ValueError(f"candidate_ranking_mode {task.candidate_ranking_mode!r}; expected "
                         f"one of {RANKING_MODES}")
    if ranking_scores is not None:
        chosen = ranking_scores.argmax(dim=2)  # [B, D, J]
    batch_size, _, num_types = chosen.shape
    batch_index = torch.arange(batch_size, device=chosen.device)[:, None, None]
    type_index = torch.arange(num_types, device=chosen.device)[None, None, :]
    chosen_coordinates = candidates[batch_index, chosen, type_index]  # [B, D, J, 2]
    chosen_scores = candidate_scores[batch_index, chosen, type_index]  # [B, D, J]
    if task.candidate_ranking_mode == "gaussian_weighted":
        assert ranking_scores is not None
        chosen_scores = ranking_scores.amax(dim=2)
    y_center, x_center = (boxes[..., 0] + boxes[..., 2]) / 2, (boxes[..., 1] + boxes[..., 3]) / 2
    half_h, half_w = heights * task.box_scale / 2, widths * task.box_scale / 2
    ymin, ymax = (y_center - half_h)[..., None], (y_center + half_h)[..., None]  # [B, D, 1]
    xmin, xmax = (x_center - half_w)[..., None], (x_center + half_w)[..., None]
    search_radius = torch.maximum(ymax - ymin, xmax - xmin) * task.candidate_search_scale
    y, x = chosen_coordinates[..., 0], chosen_coordinates[..., 1]
    unmatched = ((y < ymin) | (y > ymax) | (x < xmin) | (x > xmax)
                 | (chosen_scores < task.candidate_score_threshold)
                 | (min_distances > search_radius))  # [B, D, J]
    keypoints = torch.where(unmatched[..., None], regressed, chosen_coordinates)
    keypoint_scores = torch.where(unmatched, torch.full_like(chosen_scores,
                                                             task.unmatched_keypoint_score),
                                  chosen_scores)
    return keypoints, keypoint_scores


def normalize_keypoints(keypoints: Tensor, scores: Tensor, stride: int, resized_sizes: Tensor,
                        clip: bool) -> tuple[Tensor, Tensor]:
    """``convert_strided_predictions_to_normalized_keypoints``: ``[B, D, K, 2]`` (y, x)
    output pixels -> normalized to the resized image; with ``clip`` keypoints outside
    [0, 1] are clipped onto it and scored 0."""
    scale = stride / resized_sizes.to(keypoints)  # [B, 2] (y, x)
    normalized = keypoints * scale[:, None, None, :]
    if clip:
        inside = ((normalized >= 0.0) & (normalized <= 1.0)).all(dim=3)
        normalized = normalized.clamp(0.0, 1.0)
        scores = torch.where(inside, scores, torch.zeros_like(scores))
    return normalized, scores


def rescore_instances(tasks: list[KeypointTask], classes: Tensor, scores: Tensor,
                      keypoint_scores: Tensor) -> Tensor:
    """``_rescore_instances``: for tasks with ``rescore_instances``, a detection of the
    task's class scores its score x the mean of its keypoint scores above
    ``rescoring_threshold`` (``[B, D]`` classes 0-based, scores; ``[B, D, K]``)."""
    total = keypoint_scores.shape[2]
    for task in tasks:
        if not task.rescore_instances:
            continue
        in_task = torch.zeros(total, dtype=torch.bool, device=scores.device)
        in_task[list(task.keypoint_indices)] = True
        selected = ((classes == task.class_id)[:, :, None] & in_task).to(scores)  # [B, D, K]
        visible = keypoint_scores > task.rescoring_threshold
        keypoint_scores = torch.where(visible, keypoint_scores, torch.zeros_like(keypoint_scores))
        num_visible = (selected * visible.to(scores)).sum(dim=2).clamp(min=1.0)
        rescored = (selected * scores[:, :, None] * keypoint_scores).sum(dim=2) / num_visible
        scores = torch.where(classes == task.class_id, rescored, scores)
    return scores


__all__ = ["KEYPOINT_HEATMAP", "KEYPOINT_OFFSET", "KEYPOINT_REGRESSION", "RANKING_MODES",
           "ImageKeypoints", "KeypointTask", "SparseTargets", "concat_sparse", "gather_pairs",
           "keypoint_heatmap", "normalize_keypoints", "offset_and_regression_targets",
           "peak_candidates", "refine_keypoints", "regressed_keypoints", "rescore_instances",
           "surrounding_targets", "task_keypoints"]
