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

Sampling is random (``torch.randperm``), as the OD API's (``tf.random.shuffle``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from objdet.models.box_coders import FasterRcnnBoxCoder
from objdet.models.image_resizers import ImageBatch
from objdet.models.losses import WeightedSmoothL1Loss, WeightedSoftmaxLoss
from objdet.models.matchers import ArgMaxMatcher
from objdet.models.target_assigner import TargetAssigner

if TYPE_CHECKING:
    from objdet.models.meta_arch.faster_rcnn import FasterRCNN

RPN_LOCALIZATION_LOSS = "Loss/RPNLoss/localization_loss"
RPN_OBJECTNESS_LOSS = "Loss/RPNLoss/objectness_loss"
BOX_CLASSIFIER_LOCALIZATION_LOSS = "Loss/BoxClassifierLoss/localization_loss"
BOX_CLASSIFIER_CLASSIFICATION_LOSS = "Loss/BoxClassifierLoss/classification_loss"


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
    """``loss(model, batch, gt_boxes, gt_labels, gt_weights) ->`` the four named losses;
    groundtruth per image: boxes ``[N, 4]`` canvas pixels, labels ``[N]`` 1..K, weights ``[N]``."""

    def __init__(
        self, *, num_classes: int, box_coder: FasterRcnnBoxCoder,
        first_stage_minibatch_size: int, first_stage_positive_balance_fraction: float,
        first_stage_localization_loss_weight: float, first_stage_objectness_loss_weight: float,
        second_stage_batch_size: int, second_stage_balance_fraction: float,
        second_stage_localization_loss_weight: float,
        second_stage_classification_loss_weight: float,
        second_stage_classification_loss: nn.Module,
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
        self.localization_loss = WeightedSmoothL1Loss(delta=1.0)
        self.objectness_loss = WeightedSoftmaxLoss()

    def __call__(self, model: FasterRCNN, batch: ImageBatch, gt_boxes: list[Tensor],
                 gt_labels: list[Tensor], gt_weights: list[Tensor]) -> dict[str, Tensor]:
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
        refined, class_logits = model.predict_second_stage(first_stage["features"], proposals,
                                                           canvas)
        losses.update(self._box_classifier_losses(refined, class_logits, proposals,
                                                  num_proposals, gt_boxes, gt_classes,
                                                  gt_weights))
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
                               num_proposals: Tensor, gt_boxes: list[Tensor],
                               gt_classes: list[Tensor], gt_weights: list[Tensor]
                               ) -> dict[str, Tensor]:
        batch, size = int(proposals.shape[0]), int(proposals.shape[1])
        targets = [self.detection_assigner.assign_image(proposals[index], gt_boxes[index],
                                                        gt_classes[index], gt_weights[index])
                   for index in range(batch)]
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
