"""CenterNet (Objects as Points, Zhou et al. 2019) as the OD API's ``CenterNetMetaArch``
runs it, for the object detection task and keypoint estimation tasks
(:mod:`~objdet.models.meta_arch.center_net_keypoints`).

Contract (DESIGN.md): train mode ``model(images, targets) -> {"Loss/object_center",
"Loss/box/scale", "Loss/box/offset"}`` (the OD API's names); eval mode ``model(images) ->
list`` of ``{"boxes" [D, 4] (x1, y1, x2, y2) input-image pixels, "scores" [D], "labels" [D]
int64 label-map ids}`` (+ with keypoint tasks ``"keypoints" [D, K, 2]`` (x, y) input-image
pixels and ``"keypoints_scores" [D, K]``, K = all tasks' keypoints, indexed by the keypoint
label map's ids; zeros for detections of a class without a task, as the OD API). Keypoint
tasks add the losses ``"Loss/<task>/keypoint/heatmap"``, ``.../offset``, ``.../regression``
and the heads ``<task>/keypoint/heatmap [B, J, h, w]`` (logits), ``.../regression
[B, 2J, h, w]`` and ``.../offset [B, 2 or 2J, h, w]`` ((y, x) pairs). ``predict`` returns the raw heads of the last feature output, NCHW:
``object_center [B, K, h, w]`` (logits), ``box_scale [B, 2, h, w]`` (height, width in output
pixels), ``box_offset [B, 2, h, w]`` (y, x); extractors with several outputs (hourglass-104)
add ``<head>/<i>`` for the earlier ones in train mode, where only the losses use them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol, cast

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from objdet.errors import DataError
from objdet.models.checkpoints.variable_map import Target, conv_targets
from objdet.models.image_resizers import ImageBatch, ImageResizer, batch_images
from objdet.models.layers.padding import Conv2dSame, pad_same
from objdet.models.layers.separable_conv import SeparableConv2d, separable_conv_targets
from objdet.models.meta_arch import center_net_keypoints as keypoints_lib
from objdet.models.meta_arch import center_net_targets as targets_lib
from objdet.models.meta_arch.center_net_keypoints import KeypointTask

OBJECT_CENTER, BOX_SCALE, BOX_OFFSET = "object_center", "box_scale", "box_offset"
# The checkpoint names of the OD API's prediction-dict keys ("/" escaped as ".S"):
# model/_prediction_head_dict/<name>/<i>/...
TF_HEAD_NAMES = {OBJECT_CENTER: "object_center", BOX_SCALE: "box.Sscale",
                 BOX_OFFSET: "box.Soffset"}
PEAK_EPSILON = 1e-6


class CenterNetFeatureExtractor(Protocol):
    out_stride: int
    num_feature_outputs: int
    out_channels: list[int]

    def preprocess(self, images: Tensor) -> Tensor: ...
    def __call__(self, images: Tensor) -> list[Tensor]: ...
    def tf2_variable_map(self) -> dict[str, Target]: ...


class PredictionHead(nn.Sequential):
    """The OD API's ``make_prediction_net``: per ``(kernel_size, filters)`` a 'SAME' conv
    (separable with ``use_depthwise``) + ReLU, then a 1x1 conv to ``out_channels`` whose bias starts at ``bias_fill``.
    ``[B, C_in, h, w] -> [B, out_channels, h, w]``."""

    def __init__(self, in_channels: int, out_channels: int, *, kernel_sizes: list[int],
                 num_filters: list[int], bias_fill: float | None = None,
                 use_depthwise: bool = False) -> None:
        layers: list[nn.Module] = []
        for kernel_size, filters in zip(kernel_sizes, num_filters, strict=True):
            conv: nn.Module
            if use_depthwise:  # Keras SeparableConv2D
                conv = SeparableConv2d(in_channels, filters, kernel_size)
                for part in (conv.depthwise, conv.pointwise):
                    nn.init.xavier_uniform_(part.weight)
                nn.init.zeros_(cast(Tensor, conv.pointwise.bias))
            else:
                conv = Conv2dSame(in_channels, filters, kernel_size)
                nn.init.xavier_uniform_(conv.weight)  # Keras glorot_uniform
                nn.init.zeros_(cast(Tensor, conv.bias))
            layers += [conv, nn.ReLU()]
            in_channels = filters
        output = nn.Conv2d(in_channels, out_channels, 1)
        nn.init.xavier_uniform_(output.weight)
        nn.init.constant_(cast(Tensor, output.bias), 0.0 if bias_fill is None else bias_fill)
        layers.append(output)
        super().__init__(*layers)

    def tf2_variable_map(self) -> dict[str, Target]:
        """A Keras ``Sequential``'s ``layer_with_weights-N`` -> the convs (ReLUs skipped)."""
        convs = [(str(index), layer) for index, layer in enumerate(self)
                 if isinstance(layer, (nn.Conv2d, SeparableConv2d))]
        targets: dict[str, Target] = {}
        for position, (name, layer) in enumerate(convs):
            prefix = f"layer_with_weights-{position}"
            targets.update(separable_conv_targets(prefix, name, bias=True)
                           if isinstance(layer, SeparableConv2d) else conv_targets(prefix, name))
        return targets


@dataclass(frozen=True)
class CenterNetLossWeights:
    """``object_center_loss_weight``; the detection task's ``task_loss_weight``,
    ``scale_loss_weight``, ``offset_loss_weight``; ``min_box_overlap_iou`` for the Gaussians."""

    object_center: float = 1.0
    task: float = 1.0
    scale: float = 0.1
    offset: float = 1.0
    min_box_overlap_iou: float = 0.7


class Peaks(NamedTuple):
    """The top heatmap peaks: ``boxes [B, k, 4]`` normalized to the resized image,
    ``scores``, 0-based ``classes``, ``y``/``x`` output-pixel indices ``[B, k]`` and
    ``strided_boxes [B, k, 4]`` output pixels (all boxes ymin, xmin, ymax, xmax)."""

    boxes: Tensor
    scores: Tensor
    classes: Tensor
    y: Tensor
    x: Tensor
    strided_boxes: Tensor


@dataclass
class CenterNetTargets:
    """A batch's training targets, in output pixels: ``heatmap [B, h, w, K]`` (center
    Gaussians), per box ``indices [N, 3]`` (image, y, x of the floored center), ``sizes
    [N, 2]`` (height, width), ``offsets [N, 2]`` (center - floor), ``weights [N]``; ``valid
    [B, h * w, 1]`` (output pixels inside the resized image)."""

    heatmap: Tensor
    indices: Tensor
    sizes: Tensor
    offsets: Tensor
    weights: Tensor
    valid: Tensor


class CenterNet(nn.Module):
    """Feature extractor + center / scale / offset heads (see the module docstring).

    ``channel_means``/``channel_stds``/``bgr_ordering`` are the extractor config's
    normalization of 0..255 pixels (channels reversed first with ``bgr_ordering``, as the
    OD API), applied before the extractor's own ``preprocess``.
    """

    graph_inputs: tuple[str, ...] = ("preprocessed_inputs",)  # predict(canvas)
    graph_outputs: tuple[str, ...] = (OBJECT_CENTER, BOX_SCALE, BOX_OFFSET)

    def __init__(self, *, num_classes: int, image_resizer: ImageResizer,
                 feature_extractor: nn.Module, heads: dict[str, nn.ModuleList],
                 center_loss: nn.Module, localization_loss: nn.Module,
                 loss_weights: CenterNetLossWeights, max_box_predictions: int = 100,
                 peak_max_pool_kernel_size: int = 3,
                 channel_means: tuple[float, float, float] = (0.0, 0.0, 0.0),
                 channel_stds: tuple[float, float, float] = (1.0, 1.0, 1.0),
                 bgr_ordering: bool = False,
                 keypoint_tasks: Sequence[KeypointTask] = ()) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.image_resizer = image_resizer
        self.feature_extractor = feature_extractor
        self.heads = nn.ModuleDict(heads)
        self.center_loss, self.localization_loss = center_loss, localization_loss
        self.loss_weights = loss_weights
        self.max_box_predictions = max_box_predictions
        self.peak_max_pool_kernel_size = peak_max_pool_kernel_size
        self.register_buffer("channel_means", torch.tensor(channel_means).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("channel_stds", torch.tensor(channel_stds).view(1, 3, 1, 1),
                             persistent=False)
        self.bgr_ordering = bgr_ordering
        self.keypoint_tasks = list(keypoint_tasks)
        self.num_keypoints = sum(task.num_keypoints for task in self.keypoint_tasks)
        # the keypoint heads feed postprocess too: an export serializes them with the others
        self.graph_outputs = (*CenterNet.graph_outputs, *(
            name for task in self.keypoint_tasks for name in task.head_channels()))

    @property
    def _extractor(self) -> CenterNetFeatureExtractor:
        return cast(CenterNetFeatureExtractor, self.feature_extractor)

    @property
    def stride(self) -> int:
        return self._extractor.out_stride

    @property
    def max_detections(self) -> int:
        return self.max_box_predictions

    def resize_batch(self, images: list[Tensor]) -> ImageBatch:
        """The OD API resizes (and pads) 0..255 pixels before normalizing: the canvas holds
        the resizer's pad value on the [0, 1] scale."""
        pad = tuple(value / 255.0 for value in self.image_resizer.pad_value)
        return batch_images(images, self.image_resizer,
                            pad_value=cast(tuple[float, float, float], pad))

    def backbone(self) -> nn.Module:
        """What a ``classification`` fine-tune checkpoint fills."""
        return cast(nn.Module, self.feature_extractor.classification_backbone)

    def tf2_variable_map(self) -> dict[str, Target]:
        """``model/_feature_extractor/...`` and ``model/_prediction_head_dict/<head>/<i>/...``
        -> this model's state_dict names."""
        variable_map = {f"model/_feature_extractor/{key}":
                        Target(f"feature_extractor.{target.name}", target.layout)
                        for key, target in self._extractor.tf2_variable_map().items()}
        for name, per_output in self._head_lists().items():
            for index, head in enumerate(per_output):
                assert isinstance(head, PredictionHead)
                tf_name = TF_HEAD_NAMES.get(name, name.replace("/", ".S"))
                prefix = f"model/_prediction_head_dict/{tf_name}/{index}/"
                for key, target in head.tf2_variable_map().items():
                    variable_map[prefix + key] = Target(f"heads.{name}.{index}.{target.name}",
                                                        target.layout)
        return variable_map

    def tf2_classification_map(self) -> dict[str, Target]:
        """The backbone as a TF2 classification checkpoint holds it (``feature_extractor/``:
        the OD API's ``restore_from_objects('classification')``)."""
        prefix = "model/_feature_extractor/" + getattr(
            self.feature_extractor, "tf2_backbone_prefix", "_base_model/")
        return {"feature_extractor/" + key[len(prefix):]: target
                for key, target in self.tf2_variable_map().items() if key.startswith(prefix)}

    def forward(self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None
                ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        """Losses in train mode (``targets`` required), detections in eval mode."""
        batch = self.resize_batch(images)
        predictions = self.predict(batch.images)
        if self.training:
            if targets is None:
                raise ValueError("CenterNet in train mode needs targets; call model.eval() "
                                 "to detect")
            return self.compute_loss(predictions, targets, batch)
        return self.postprocess(predictions, batch.resized_sizes, batch.original_sizes)

    def preprocess(self, images: Tensor) -> Tensor:
        """Canvas ``[B, 3, H, W]`` in [0, 1] -> the extractor's input."""
        pixels = images * 255.0
        if self.bgr_ordering:  # before the means: they are given in the network's order
            pixels = pixels.flip(1)
        means, stds = cast(Tensor, self.channel_means), cast(Tensor, self.channel_stds)
        return self._extractor.preprocess((pixels - means) / stds)

    def predict(self, images: Tensor) -> dict[str, Tensor]:
        """Canvas ``[B, 3, H, W]`` in [0, 1] -> raw heads (module docstring)."""
        features = self._extractor(self.preprocess(images))
        predictions: dict[str, Tensor] = {}
        for name, per_output in self._head_lists().items():
            if len(per_output) != len(features):
                raise ValueError(f"{len(features)} feature outputs for {len(per_output)} "
                                 f"{name} heads")
            predictions[name] = per_output[-1](features[-1])
            if self.training:  # earlier outputs only feed the losses
                for index, (head, feature) in enumerate(zip(per_output[:-1], features[:-1])):
                    predictions[f"{name}/{index}"] = head(feature)
        return predictions

    def _head_lists(self) -> dict[str, nn.ModuleList]:
        """Head name -> one head per feature output."""
        return {name: cast(nn.ModuleList, heads) for name, heads in self.heads.items()}

    def _all_outputs(self, predictions: dict[str, Tensor], name: str) -> list[Tensor]:
        earlier = len(self._head_lists()[name]) - 1
        return [predictions[f"{name}/{index}"] for index in range(earlier)] + [predictions[name]]

    def postprocess(self, predictions: dict[str, Tensor], resized_sizes: list[tuple[int, int]],
                    original_sizes: list[tuple[int, int]]) -> list[dict[str, Tensor]]:
        """Top ``max_box_predictions`` heatmap peaks (3x3 max-pool NMS) -> boxes in input
        pixels; only peaks scoring > 0 are kept (the OD API's ``num_detections``)."""
        sizes = torch.tensor(resized_sizes, device=predictions[OBJECT_CENTER].device)
        decoded = self.decode_batch(predictions, sizes)
        normalized, scores, classes = decoded["boxes"], decoded["scores"], decoded["classes"]
        keep_all = decoded["valid"]
        keypoints, keypoint_scores = decoded.get("keypoints"), decoded.get("keypoint_scores")
        detections = []
        for index, (original_h, original_w) in enumerate(original_sizes):
            in_pixels = normalized[index][:, [1, 0, 3, 2]] * normalized.new_tensor(
                [original_w, original_h, original_w, original_h])  # x1 y1 x2 y2
            keep = keep_all[index]
            detection = {"boxes": in_pixels[keep], "scores": scores[index][keep],
                         "labels": classes[index][keep] + 1}
            if keypoints is not None and keypoint_scores is not None:
                # [D, K, 2] normalized (y, x) -> (x, y) input-image pixels
                detection["keypoints"] = keypoints[index][keep].flip(-1) * keypoints.new_tensor(
                    [original_w, original_h])
                detection["keypoints_scores"] = keypoint_scores[index][keep]
            detections.append(detection)
        return detections

    def decode_batch(self, predictions: dict[str, Tensor], resized_sizes: Tensor
                     ) -> dict[str, Tensor]:
        """:meth:`postprocess` before it splits the batch, with static shapes (the ONNX graph
        exports it): ``boxes [B, k, 4]`` (ymin, xmin, ymax, xmax) normalized to the resized
        image (``resized_sizes [B, 2]``), ``scores [B, k]`` (rescored by the keypoints where
        a task asks), 0-based ``classes [B, k]``, ``valid [B, k]`` (scoring > 0 before any
        rescoring: the OD API's num_detections, the first rows); with keypoint tasks also
        ``keypoints [B, k, K, 2]`` (y, x) normalized and ``keypoint_scores [B, k, K]``."""
        peaks = self._decode(predictions, resized_sizes)
        decoded = {"boxes": peaks.boxes, "scores": peaks.scores, "classes": peaks.classes,
                   "valid": peaks.scores > 0}
        if self.keypoint_tasks:
            keypoints, keypoint_scores = self.decode_keypoints(predictions, peaks, resized_sizes)
            decoded["scores"] = keypoints_lib.rescore_instances(
                self.keypoint_tasks, peaks.classes, peaks.scores, keypoint_scores)
            decoded["keypoints"], decoded["keypoint_scores"] = keypoints, keypoint_scores
        return decoded

    def decode_keypoints(self, predictions: dict[str, Tensor], peaks: Peaks,
                         resized_sizes: Tensor) -> tuple[Tensor, Tensor]:
        """``_postprocess_keypoints_multi_class`` + normalization: keypoints ``[B, k, K, 2]``
        (y, x) normalized to the resized image and scores ``[B, k, K]`` of the peaks; zeros
        for peaks of a class without a task (``clip_out_of_frame_keypoints`` applies when
        every task asks for it, as the OD API)."""
        batch_size, num_peaks = peaks.classes.shape
        like = peaks.strided_boxes
        keypoints = like.new_zeros(batch_size, num_peaks, self.num_keypoints, 2)
        scores = like.new_zeros(batch_size, num_peaks, self.num_keypoints)
        for task in self.keypoint_tasks:
            candidates, candidate_scores, counts = keypoints_lib.peak_candidates(
                task, predictions[task.head_name(keypoints_lib.KEYPOINT_HEATMAP)],
                predictions[task.head_name(keypoints_lib.KEYPOINT_OFFSET)])
            regressed = keypoints_lib.regressed_keypoints(
                predictions[task.head_name(keypoints_lib.KEYPOINT_REGRESSION)],
                peaks.y, peaks.x)
            refined, refined_scores = keypoints_lib.refine_keypoints(
                task, regressed, candidates, candidate_scores, counts, peaks.strided_boxes)
            member = ((peaks.classes == task.class_id) & (peaks.scores > 0))[..., None]
            columns = list(task.keypoint_indices)
            keypoints[:, :, columns] = torch.where(member[..., None], refined, 0.0)
            scores[:, :, columns] = torch.where(member, refined_scores, 0.0)
        clip = all(task.clip_out_of_frame_keypoints for task in self.keypoint_tasks)
        return keypoints_lib.normalize_keypoints(keypoints, scores, self.stride, resized_sizes,
                                                 clip)

    def decode_peaks(self, predictions: dict[str, Tensor], resized_sizes: Tensor
                     ) -> tuple[Tensor, Tensor, Tensor]:
        """Raw heads and ``resized_sizes [B, 2]`` (height, width of each image on the canvas)
        -> the top peaks' boxes ``[B, k, 4]`` (ymin, xmin, ymax, xmax) normalized to the
        resized image, scores ``[B, k]`` descending and class indices ``[B, k]`` (0-based).
        Batched with static shapes: the ONNX graph exports it as it is."""
        peaks = self._decode(predictions, resized_sizes)
        return peaks.boxes, peaks.scores, peaks.classes

    def _decode(self, predictions: dict[str, Tensor], resized_sizes: Tensor) -> Peaks:
        """:meth:`decode_peaks` with the peaks' positions and output-pixel boxes."""
        probabilities = torch.sigmoid(predictions[OBJECT_CENTER])  # [B, K, h, w]
        height, width = probabilities.shape[2], probabilities.shape[3]
        # As the OD API: output rows/columns compared with the resized size in *input* pixels.
        limits = resized_sizes.to(device=probabilities.device)  # [B, 2]
        rows = torch.arange(height, device=probabilities.device).view(1, -1, 1)
        columns = torch.arange(width, device=probabilities.device).view(1, 1, -1)
        inside = (rows < limits[:, :1, None]) & (columns < limits[:, 1:, None])  # [B, h, w]
        probabilities = probabilities * inside[:, None].to(probabilities)
        scores, y_indices, x_indices, classes = self._top_peaks(probabilities)
        boxes = self._strided_boxes(predictions, y_indices, x_indices)  # [B, k, 4] y1 x1 y2 x2
        window = limits.to(boxes)[:, None, [0, 1, 0, 1]]  # [B, 1, 4] (h, w, h, w)
        return Peaks((boxes * self.stride / window).clamp(0.0, 1.0), scores, classes,
                     y_indices, x_indices, boxes)

    def _top_peaks(self, probabilities: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The OD API's ``top_k_feature_map_locations`` (per_channel False): scores ``[B, k]``
        and y, x, class indices ``[B, k]``, in descending score, ties by NHWC order."""
        kernel = self.peak_max_pool_kernel_size
        if kernel > 1:
            padded = pad_same(probabilities, (kernel, kernel), (1, 1), value=float("-inf"))
            pooled = F.max_pool2d(padded, kernel, stride=1)
            peaks = probabilities * ((probabilities - pooled).abs() < PEAK_EPSILON).to(
                probabilities)
        else:
            peaks = probabilities
        batch_size, num_classes, _, width = peaks.shape
        flat = peaks.permute(0, 2, 3, 1).reshape(batch_size, -1)  # NHWC order, as TF
        k = min(self.max_box_predictions, flat.shape[1])
        if torch.compiler.is_exporting() or torch.jit.is_tracing():
            # ONNX TopK, like tf.math.top_k, returns equal values lowest index first (and
            # torch.onnx has no stable sort; is_tracing: its TorchScript exporter)
            scores, order = flat.topk(k, dim=1)
        else:
            # A stable sort: tf.math.top_k returns equal values lowest index first.
            order = torch.sort(flat, dim=1, descending=True, stable=True).indices[:, :k]
            scores = flat.gather(1, order)
        classes = order % num_classes
        positions = order // num_classes
        return scores, positions // width, positions % width, classes

    def _strided_boxes(self, predictions: dict[str, Tensor], y_indices: Tensor,
                       x_indices: Tensor) -> Tensor:
        """``prediction_tensors_to_boxes``: ``[B, k, 4]`` (ymin, xmin, ymax, xmax) output
        pixels, clipped to the output map."""
        scale, offset = predictions[BOX_SCALE], predictions[BOX_OFFSET]  # [B, 2, h, w]
        height, width = int(scale.shape[2]), int(scale.shape[3])
        flat_index = (y_indices * width + x_indices).unsqueeze(1).expand(-1, 2, -1)
        sizes = scale.flatten(2).gather(2, flat_index).clamp(min=0.0)  # [B, 2, k] (h, w)
        offsets = offset.flatten(2).gather(2, flat_index)  # [B, 2, k] (y, x)
        y_center = y_indices.to(scale) + offsets[:, 0]
        x_center = x_indices.to(scale) + offsets[:, 1]
        half_h, half_w = sizes[:, 0] / 2.0, sizes[:, 1] / 2.0
        bottom, right = float(height), float(width)  # float bounds: one clamp overload
        return torch.stack([(y_center - half_h).clamp(0.0, bottom),
                            (x_center - half_w).clamp(0.0, right),
                            (y_center + half_h).clamp(0.0, bottom),
                            (x_center + half_w).clamp(0.0, right)], dim=2)

    def assign_targets(self, targets: list[dict[str, Tensor]], batch: ImageBatch, like: Tensor
                       ) -> CenterNetTargets:
        """Per-image targets (input-image pixels) -> the OD API's CenterNet targets."""
        if len(targets) != len(batch.original_sizes):
            raise DataError(f"{len(targets)} targets for {len(batch.original_sizes)} images")
        canvas = (int(batch.images.shape[2]), int(batch.images.shape[3]))
        out_size = (max(canvas[0] // self.stride, 1), max(canvas[1] // self.stride, 1))
        scales = batch.scales().flip(1).repeat(1, 2)  # [B, 4] (x, y, x, y) factors
        heatmaps, indices, sizes, offsets, weights = [], [], [], [], []
        for index, target in enumerate(targets):
            boxes, classes, box_weights = self._checked_target(index, target, like)
            frame = targets_lib.to_output_frame(boxes * scales[index], canvas, self.stride)
            heatmaps.append(targets_lib.center_heatmap(
                frame, classes, box_weights, num_classes=self.num_classes, out_size=out_size,
                min_iou=self.loss_weights.min_box_overlap_iou))
            centers, center_offsets = targets_lib.floor_offsets(frame)
            batch_column = torch.full_like(centers[:, :1], index)
            indices.append(torch.cat([batch_column, centers], dim=1))
            sizes.append(torch.stack([frame.height, frame.width], dim=1))
            offsets.append(center_offsets)
            weights.append(box_weights)
        gather_at = torch.cat(indices)  # [N, 3] (batch, y, x)
        # A center on the canvas' bottom/right edge floors onto the next row (TF would fail).
        gather_at[:, 1].clamp_(0, out_size[0] - 1)
        gather_at[:, 2].clamp_(0, out_size[1] - 1)
        return CenterNetTargets(
            heatmap=torch.stack(heatmaps), indices=gather_at, sizes=torch.cat(sizes),
            offsets=torch.cat(offsets), weights=torch.cat(weights),
            valid=targets_lib.valid_output_mask(batch.resized_sizes, out_size, self.stride,
                                                like.device))

    def compute_loss(self, predictions: dict[str, Tensor], targets: list[dict[str, Tensor]],
                     batch: ImageBatch) -> dict[str, Tensor]:
        """The OD API's ``CenterNetMetaArch.loss`` for the center and detection tasks."""
        assigned = self.assign_targets(targets, batch, predictions[OBJECT_CENTER])
        num_boxes = assigned.weights.new_tensor(max(int((assigned.weights != 0).sum()), 1))
        heatmap = assigned.heatmap.flatten(1, 2)  # [B, h * w, K]
        centers = self._all_outputs(predictions, OBJECT_CENTER)
        center_loss = sum(self.center_loss(pred.permute(0, 2, 3, 1).flatten(1, 2), heatmap,
                                           assigned.valid).sum() for pred in centers)
        losses = {"Loss/object_center": self.loss_weights.object_center
                  * center_loss / (len(centers) * num_boxes)}
        at = assigned.indices
        box_weights = assigned.weights[:, None]
        for name, target_values, weight, key in (
                (BOX_SCALE, assigned.sizes, self.loss_weights.scale, "Loss/box/scale"),
                (BOX_OFFSET, assigned.offsets, self.loss_weights.offset, "Loss/box/offset")):
            outputs = self._all_outputs(predictions, name)
            loss = sum(self.localization_loss(output[at[:, 0], :, at[:, 1], at[:, 2]],  # [N, 2]
                                              target_values, box_weights).sum()
                       for output in outputs)
            losses[key] = self.loss_weights.task * weight * loss / (len(outputs) * num_boxes)
        if self.keypoint_tasks:
            losses.update(self._keypoint_losses(predictions, targets, batch, assigned.valid))
        return cast(dict[str, Tensor], losses)

    def _keypoint_losses(self, predictions: dict[str, Tensor], targets: list[dict[str, Tensor]],
                         batch: ImageBatch, valid: Tensor) -> dict[str, Tensor]:
        """``_compute_keypoint_estimation_losses`` of every task: the heatmap focal loss over
        the valid pixels outside blacked-out boxes / the keypoint count, and L1 offset and
        regression losses / their summed weights; each x its weight x ``task_loss_weight``.
        ``valid [B, h * w, 1]``: output pixels inside the resized images."""
        like = predictions[OBJECT_CENTER]
        canvas = (int(batch.images.shape[2]), int(batch.images.shape[3]))
        out_size = (max(canvas[0] // self.stride, 1), max(canvas[1] // self.stride, 1))
        # canvas (x, y) pixels -> output (y, x) pixels
        to_output = like.new_tensor([out_size[0] / canvas[0], out_size[1] / canvas[1]])
        scales = batch.scales()  # [B, 2] (y, x) input image -> canvas
        images = []
        for index, target in enumerate(targets):
            boxes, classes, box_weights = self._checked_target(index, target, like)
            keypoints, visible = self._checked_keypoints(index, target, boxes.shape[0], like)
            factor = scales[index].to(like) * to_output  # [2] (y, x)
            images.append((keypoints.flip(-1) * factor, visible, classes, box_weights,
                           boxes[:, [1, 0, 3, 2]] * factor.repeat(2)))
        losses: dict[str, Tensor] = {}
        for task in self.keypoint_tasks:
            heatmaps, counts, masks, offsets, regressions = [], [], [], [], []
            for index, (keypoints, visible, classes, box_weights, boxes) in enumerate(images):
                image = keypoints_lib.task_keypoints(task, keypoints, visible, classes,
                                                     box_weights, boxes)
                heatmap, count, mask = keypoints_lib.keypoint_heatmap(task, image, out_size)
                heatmaps.append(heatmap)
                counts.append(count)
                masks.append(mask)
                offset, regression = keypoints_lib.offset_and_regression_targets(
                    task, image, index, out_size)
                offsets.append(offset)
                regressions.append(regression)
            num_keypoints = torch.stack(counts).sum().to(like).clamp(min=1.0)
            pixel_weights = valid * torch.stack(masks).flatten(1, 2)  # [B, h * w, J]
            heatmap_targets = torch.stack(heatmaps).flatten(1, 2)
            name = task.head_name(keypoints_lib.KEYPOINT_HEATMAP)
            outputs = self._all_outputs(predictions, name)
            heatmap_loss = sum(task.heatmap_loss(output.permute(0, 2, 3, 1).flatten(1, 2),
                                                 heatmap_targets, pixel_weights).sum()
                               for output in outputs) / (len(outputs) * num_keypoints)
            losses[f"Loss/{name}"] = (task.task_loss_weight * task.heatmap_loss_weight
                                      * heatmap_loss)
            for head, sparse, weight, per_type in (
                    (keypoints_lib.KEYPOINT_OFFSET, keypoints_lib.concat_sparse(offsets),
                     task.offset_loss_weight, task.per_keypoint_offset),
                    (keypoints_lib.KEYPOINT_REGRESSION, keypoints_lib.concat_sparse(regressions),
                     task.regression_loss_weight, True)):
                name = task.head_name(head)
                outputs = self._all_outputs(predictions, name)
                total = sum((sparse.weights * task.localization_loss(
                    keypoints_lib.gather_pairs(output, sparse.indices, per_type), sparse.values,
                    torch.ones_like(sparse.values)).sum(dim=1)).sum() for output in outputs)
                normalizer = len(outputs) * sparse.weights.sum().clamp(min=1.0)
                losses[f"Loss/{name}"] = task.task_loss_weight * weight * total / normalizer
        return losses

    def _checked_keypoints(self, index: int, target: dict[str, Tensor], count: int,
                           like: Tensor) -> tuple[Tensor, Tensor]:
        """``keypoints [N, K, 2]`` (x, y) input pixels, NaN unknown, and ``visible [N, K]``
        (``keypoint_visibilities`` where given, else all)."""
        if "keypoints" not in target:
            raise DataError(f"targets[{index}]: CenterNet with keypoint tasks trains on "
                            "'keypoints' [N, K, 2]; set the input reader's num_keypoints")
        keypoints = torch.as_tensor(target["keypoints"]).to(like)
        needed = 1 + max(max(task.keypoint_indices) for task in self.keypoint_tasks)
        if keypoints.dim() != 3 or keypoints.shape[0] != count or keypoints.shape[2] != 2 \
                or keypoints.shape[1] < needed:
            raise DataError(f"targets[{index}]: keypoints must be [{count}, K >= {needed}, 2] "
                            f"(x, y), found {list(keypoints.shape)}")
        visible = target.get("keypoint_visibilities")
        visible_mask = (torch.ones(keypoints.shape[:2], dtype=torch.bool, device=like.device)
                        if visible is None
                        else torch.as_tensor(visible, device=like.device).bool())
        return keypoints, visible_mask

    def _checked_target(self, index: int, target: dict[str, Tensor], like: Tensor
                        ) -> tuple[Tensor, Tensor, Tensor]:
        """``boxes [N, 4]`` input pixels, 0-based ``classes [N]``, ``weights [N]``."""
        boxes = torch.as_tensor(target["boxes"]).to(like).reshape(-1, 4)
        labels = torch.as_tensor(target["labels"], device=like.device).long().reshape(-1)
        if labels.shape[0] != boxes.shape[0]:
            raise DataError(f"targets[{index}]: {boxes.shape[0]} boxes but "
                            f"{labels.shape[0]} labels")
        if labels.numel() and (labels.min() < 1 or labels.max() > self.num_classes):
            raise DataError(f"targets[{index}]: labels must be label-map ids in "
                            f"1..{self.num_classes}, found {sorted(set(labels.tolist()))}")
        weights = target.get("weights")
        box_weights = (torch.ones(labels.shape[0], dtype=like.dtype, device=like.device)
                       if weights is None else torch.as_tensor(weights).to(like).reshape(-1))
        return boxes, labels - 1, box_weights


__all__ = ["BOX_OFFSET", "BOX_SCALE", "OBJECT_CENTER", "CenterNet", "CenterNetLossWeights",
           "CenterNetTargets",
           "PredictionHead"]
