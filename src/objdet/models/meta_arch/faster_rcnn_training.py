"""Faster R-CNN training as the OD API's ``FasterRCNNMetaArch.loss``: balanced minibatch
sampling and the RPN and box-classifier losses.

- RPN: anchors (clipped to the canvas with ``clip_anchors_to_image``, else those leaving it
  dropped) matched to groundtruth at IoU 0.7 / 0.3 (every groundtruth also takes its best
  anchor); ``first_stage_minibatch_size`` anchors sampled per image with at most
  ``first_stage_positive_balance_fraction`` positives; smooth-L1 box and softmax objectness
  losses summed over the sample / its size, averaged over images, weighted.
- Box classifier: proposals (no gradient) matched at IoU 0.5 (below is background);
  ``second_stage_batch_size`` sampled per image with at most ``second_stage_balance_fraction``
  positives; the classification loss and the smooth-L1 loss of the groundtruth class's box
  codes, each summed / (sampled proposals * images), weighted.
- Mask (with a mask head): the head runs on the sampled proposals' box-classifier features;
  each positive proposal's groundtruth mask (on the canvas) is cropped to it and resized to
  the mask size; the sigmoid cross-entropy of the groundtruth class's mask logits, summed /
  (positive weight * mask pixels), weighted (``_loss_box_classifier``'s mask loss).

Sampling is random (``torch.randperm``), as the OD API's (``tf.random.shuffle``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from objdet.errors import ConfigError
from objdet.models.box_coders import FasterRcnnBoxCoder
from objdet.models.image_resizers import ImageBatch
from objdet.models.losses import WeightedSmoothL1Loss, WeightedSoftmaxLoss
from objdet.models.matchers import ArgMaxMatcher
from objdet.models.meta_arch.faster_rcnn_masks import mask_targets
from objdet.models.target_assigner import TargetAssigner

if TYPE_CHECKING:
    from objdet.models.meta_arch.faster_rcnn import FasterRCNN

RPN_LOCALIZATION_LOSS = "Loss/RPNLoss/localization_loss"
RPN_OBJECTNESS_LOSS = "Loss/RPNLoss/objectness_loss"
BOX_CLASSIFIER_LOCALIZATION_LOSS = "Loss/BoxClassifierLoss/localization_loss"
BOX_CLASSIFIER_CLASSIFICATION_LOSS = "Loss/BoxClassifierLoss/classification_loss"
BOX_CLASSIFIER_MASK_LOSS = "Loss/BoxClassifierLoss/mask_loss"

# TargetAssigner.assign_image: class targets, class weights, box targets, box weights, matches
Assignment = tuple[Tensor, Tensor, Tensor, Tensor, Tensor]


def balanced_sample(indicator: Tensor, labels: Tensor, batch_size: int,
                    positive_fraction: float) -> Tensor:
    """The OD API's ``BalancedPositiveNegativeSampler.subsample``: ``indicator [N]`` (may be
    sampled), ``labels [N]`` (positive) bool -> sampled ``[N]`` bool: at most
    ``int(positive_fraction * batch_size)`` random positives, then random negatives up to
    ``batch_size`` in all."""
    positives = torch.nonzero(indicator & labels, as_tuple=True)[0]
    negatives = torch.nonzero(indicator & ~labels, as_tuple=True)[0]
    positives = positives[torch.randperm(positives.numel(), device=positives.device)]
    positives = positives[: int(positive_fraction * batch_size)]
    negatives = negatives[torch.randperm(negatives.numel(), device=negatives.device)]
    negatives = negatives[: batch_size - positives.numel()]
    sampled = torch.zeros_like(indicator)
    sampled[positives] = True
    sampled[negatives] = True
    return sampled


class FasterRcnnLoss:
    """``loss(model, batch, gt_boxes, gt_labels, gt_weights, gt_masks) ->`` the four named
    losses (five with a mask head); groundtruth per image: boxes ``[N, 4]`` canvas pixels,
    labels ``[N]`` 1..K, weights ``[N]``, masks ``[N, H_c, W_c]`` on the canvas."""

    def __init__(
        self, *, num_classes: int, box_coder: FasterRcnnBoxCoder,
        first_stage_minibatch_size: int, first_stage_positive_balance_fraction: float,
        first_stage_localization_loss_weight: float, first_stage_objectness_loss_weight: float,
        second_stage_batch_size: int, second_stage_balance_fraction: float,
        second_stage_localization_loss_weight: float,
        second_stage_classification_loss_weight: float,
        second_stage_classification_loss: nn.Module,
        second_stage_mask_loss_weight: float = 1.0,
    ) -> None:
        self.num_classes = num_classes
        self.proposal_assigner = TargetAssigner(
            matcher=ArgMaxMatcher(matched_threshold=0.7, unmatched_threshold=0.3,
                                  force_match_for_each_row=True),
            box_coder=box_coder, unmatched_class_label=torch.zeros(1))
        self.detection_assigner = TargetAssigner(
            matcher=ArgMaxMatcher(matched_threshold=0.5, negatives_lower_than_unmatched=True),
            box_coder=box_coder, unmatched_class_label=F.one_hot(
                torch.tensor(0), num_classes + 1).float())
        self.first_stage_minibatch_size = first_stage_minibatch_size
        self.first_stage_positive_fraction = first_stage_positive_balance_fraction
        self.first_stage_weights = (first_stage_localization_loss_weight,
                                    first_stage_objectness_loss_weight)
        self.second_stage_batch_size = second_stage_batch_size
        self.second_stage_positive_fraction = second_stage_balance_fraction
        self.second_stage_weights = (second_stage_localization_loss_weight,
                                     second_stage_classification_loss_weight)
        self.classification_loss = second_stage_classification_loss
        self.mask_loss_weight = second_stage_mask_loss_weight
        self.localization_loss = WeightedSmoothL1Loss(delta=1.0)
        self.objectness_loss = WeightedSoftmaxLoss()

    def __call__(self, model: FasterRCNN, batch: ImageBatch, gt_boxes: list[Tensor],
                 gt_labels: list[Tensor], gt_weights: list[Tensor],
                 gt_masks: list[Tensor] | None = None) -> dict[str, Tensor]:
        if self.second_stage_batch_size > model.first_stage_max_proposals:
            # as the OD API's model builder, which checks it only for training
            raise ConfigError(
                f"model.faster_rcnn.second_stage_batch_size: {self.second_stage_batch_size}; "
                f"expected <= first_stage_max_proposals ({model.first_stage_max_proposals}) "
                "for training")
        canvas = (int(batch.images.shape[2]), int(batch.images.shape[3]))
        first_stage = model.predict_first_stage(batch.images)
        if not model.clip_anchors_to_image:
            first_stage = _inside_canvas(first_stage, canvas)
        losses = self._rpn_losses(first_stage, gt_boxes, gt_weights)
        proposals, num_proposals = model.propose(first_stage, batch.resized_sizes)
        gt_classes = [F.one_hot(labels, self.num_classes + 1).to(boxes)
                      for labels, boxes in zip(gt_labels, gt_boxes)]
        proposals, num_proposals = self._sample_proposals(proposals, num_proposals, gt_boxes,
                                                          gt_classes, gt_weights)
        refined, class_logits, classifier_features = model.second_stage_outputs(
            first_stage["features"], proposals, canvas)
        targets = [self.detection_assigner.assign_image(proposals[index], gt_boxes[index],
                                                        gt_classes[index], gt_weights[index])
                   for index in range(int(proposals.shape[0]))]
        losses.update(self._box_classifier_losses(refined, class_logits, proposals,
                                                  num_proposals, targets))
        if model.mask_head is not None:
            if gt_masks is None:
                raise ValueError("a mask head's loss needs groundtruth masks")
            mask_logits = model.mask_head(classifier_features)  # [B*P, C'', h, w]
            losses[BOX_CLASSIFIER_MASK_LOSS] = self._mask_loss(
                mask_logits, proposals, num_proposals, targets, gt_masks, canvas)
        return losses

    def _rpn_losses(self, first_stage: dict[str, Tensor], gt_boxes: list[Tensor],
                    gt_weights: list[Tensor]) -> dict[str, Tensor]:
        anchors = first_stage["anchors"]
        ones = [boxes.new_ones(boxes.shape[0], 1) for boxes in gt_boxes]
        assigned = self.proposal_assigner.assign(anchors, gt_boxes, ones, gt_weights)
        labels = assigned.class_targets[..., 0] > 0  # [B, A]
        sampled = torch.stack([
            balanced_sample(weights > 0, image_labels, self.first_stage_minibatch_size,
                            self.first_stage_positive_fraction)
            for weights, image_labels in zip(assigned.class_weights, labels)
        ]).to(anchors)  # [B, A] 0/1
        normalizer = sampled.sum(dim=1).clamp(min=1.0)  # [B]
        localization = self.localization_loss(first_stage["rpn_box_encodings"],
                                              assigned.box_targets,
                                              sampled * assigned.box_weights)  # [B, A]
        objectness = self.objectness_loss(first_stage["rpn_objectness"],
                                          F.one_hot(labels.long(), 2).to(anchors), sampled)
        localization_weight, objectness_weight = self.first_stage_weights
        return {
            RPN_LOCALIZATION_LOSS: localization_weight * (localization.sum(1) / normalizer).mean(),
            RPN_OBJECTNESS_LOSS: objectness_weight * (objectness.sum(1) / normalizer).mean(),
        }

    def _sample_proposals(self, proposals: Tensor, num_proposals: Tensor,
                          gt_boxes: list[Tensor], gt_classes: list[Tensor],
                          gt_weights: list[Tensor]) -> tuple[Tensor, Tensor]:
        """Proposals ``[B, P, 4]`` -> a balanced sample ``[B, second_stage_batch_size, 4]``
        (in proposal order, zero-padded) and its sizes ``[B]``."""
        size = self.second_stage_batch_size
        sampled_boxes = proposals.new_zeros(proposals.shape[0], size, 4)
        counts = []
        for index in range(proposals.shape[0]):
            count = int(num_proposals[index])
            class_targets, class_weights, _, _, _ = self.detection_assigner.assign_image(
                proposals[index], gt_boxes[index], gt_classes[index], gt_weights[index])
            valid = (torch.arange(proposals.shape[1], device=proposals.device) < count) & (
                class_weights > 0)
            positive = class_targets.argmax(dim=1) > 0
            chosen = balanced_sample(valid, positive, size, self.second_stage_positive_fraction)
            boxes = proposals[index][chosen]
            sampled_boxes[index, : boxes.shape[0]] = boxes
            counts.append(int(boxes.shape[0]))
        return sampled_boxes, torch.tensor(counts, device=proposals.device)

    def _box_classifier_losses(self, refined: Tensor, class_logits: Tensor, proposals: Tensor,
                               num_proposals: Tensor, targets: list[Assignment]
                               ) -> dict[str, Tensor]:
        """``targets``: each image's ``assign_image`` of its proposals."""
        batch, size = int(proposals.shape[0]), int(proposals.shape[1])
        class_targets, class_weights, box_targets, box_weights, _ = (
            torch.stack(part) for part in zip(*targets))
        valid = (torch.arange(size, device=proposals.device)[None, :]
                 < num_proposals[:, None]).to(refined)  # [B, P]
        normalizer = num_proposals.clamp(min=1).to(refined)[:, None] * batch  # [B, 1]
        if refined.shape[2] == 1:
            encodings = refined[:, :, 0]  # [B, P, 4]
        else:  # the groundtruth class's codes (background rows have no box weight)
            class_index = (class_targets.argmax(dim=2) - 1).clamp(min=0)  # [B, P]
            encodings = refined.gather(2, class_index[:, :, None, None].expand(-1, -1, 1, 4))[:, :, 0]
        localization = self.localization_loss(encodings, box_targets, box_weights) / normalizer
        classification = self.classification_loss(class_logits, class_targets,
                                                  class_weights) / normalizer
        localization_weight, classification_weight = self.second_stage_weights
        return {
            BOX_CLASSIFIER_LOCALIZATION_LOSS: localization_weight * (localization * valid).sum(),
            BOX_CLASSIFIER_CLASSIFICATION_LOSS:
                classification_weight * (classification * valid).sum(),
        }


    def _mask_loss(self, mask_logits: Tensor, proposals: Tensor, num_proposals: Tensor,
                   targets: list[Assignment], gt_masks: list[Tensor],
                   canvas: tuple[int, int]) -> Tensor:
        """``mask_logits [B*P, C'' (1 or K), h, w]`` of the sampled ``proposals [B, P, 4]``
        -> the weighted mask loss: positives only (box weights), padding rows excluded."""
        batch, size = int(proposals.shape[0]), int(proposals.shape[1])
        mask_size = (int(mask_logits.shape[2]), int(mask_logits.shape[3]))
        logits = mask_logits.reshape(batch, size, -1, *mask_size)  # [B, P, C'', h, w]
        total = mask_logits.new_zeros(())
        weight_sum = mask_logits.new_zeros(())
        for index, (class_targets, _, _, box_weights, matches) in enumerate(targets):
            valid = torch.arange(size, device=proposals.device) < num_proposals[index]
            weights = box_weights * valid.to(box_weights)  # [P]
            if logits.shape[2] == 1:
                image_logits = logits[index, :, 0]  # [P, h, w]
            else:  # the groundtruth class's mask (background rows have no weight)
                class_index = (class_targets.argmax(dim=1) - 1).clamp(min=0)  # [P]
                image_logits = logits[index, torch.arange(size, device=logits.device),
                                      class_index]
            with torch.no_grad():
                image_targets = mask_targets(gt_masks[index].to(logits), proposals[index],
                                             torch.where(weights > 0, matches, -1), canvas,
                                             mask_size)  # [P, h, w]
            losses = F.binary_cross_entropy_with_logits(image_logits, image_targets,
                                                        reduction="none")
            total = total + (losses * weights[:, None, None]).sum()
            weight_sum = weight_sum + weights.sum()
        normalizer = (weight_sum * mask_size[0] * mask_size[1]).clamp(min=1.0)
        return self.mask_loss_weight * total / normalizer


def _inside_canvas(first_stage: dict[str, Tensor], canvas: tuple[int, int]) -> dict[str, Tensor]:
    """Drop anchors (and their predictions) not wholly inside the canvas (the OD API's
    ``prune_outside_window`` in training without ``clip_anchors_to_image``)."""
    height, width = canvas
    anchors = first_stage["anchors"]
    inside = ((anchors[:, 0] >= 0) & (anchors[:, 1] >= 0) & (anchors[:, 2] <= width)
              & (anchors[:, 3] <= height))
    return {**first_stage, "anchors": anchors[inside],
            "rpn_box_encodings": first_stage["rpn_box_encodings"][:, inside],
            "rpn_objectness": first_stage["rpn_objectness"][:, inside]}
