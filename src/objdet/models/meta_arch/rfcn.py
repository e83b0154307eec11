"""R-FCN (Dai et al. 2016) as the OD API's ``RFCNMetaArch``: a Faster R-CNN whose second stage
runs the extractor's box classifier part once over the whole first-stage map and pools each
proposal's box codes and class logits position-sensitively from it
(:class:`~objdet.models.heads.rfcn_box_predictor.RfcnBoxPredictor`), instead of cropping
every proposal (``initial_crop_size``, ``maxpool_*`` are unused).

First stage, proposals, sampling in training, losses and post-processing are Faster R-CNN's
(:mod:`objdet.models.meta_arch.faster_rcnn`).
"""

from __future__ import annotations

from torch import Tensor

from objdet.errors import CheckpointError
from objdet.models.checkpoints.variable_map import Target
from objdet.models.heads.rfcn_box_predictor import RfcnBoxPredictor
from objdet.models.meta_arch.faster_rcnn import FasterRCNN, FasterRcnnFeatureExtractor


class RFCN(FasterRCNN):
    """Faster R-CNN with an ``rfcn_box_predictor`` second stage (see the module docstring)."""

    def second_stage_outputs(self, features: Tensor, proposals: Tensor,
                             canvas_size: tuple[int, int]) -> tuple[Tensor, Tensor, Tensor]:
        """Map ``[B, C, h, w]``, proposals ``[B, P, 4]`` canvas pixels -> ``refined_box_encodings
        [B, P, num_classes, 4]``, ``class_logits [B, P, K+1]`` and the box classifier feature
        map ``[B, C', h', w']`` they were pooled from."""
        extractor: FasterRcnnFeatureExtractor = self.feature_extractor  # type: ignore[assignment]
        predictor: RfcnBoxPredictor = self.box_predictor  # type: ignore[assignment]
        height, width = canvas_size
        normalized = proposals / proposals.new_tensor([width, height, width, height])
        classifier_features = extractor.extract_box_classifier_features(features)
        box_encodings, class_logits = predictor(classifier_features, normalized)
        batch, num_proposals = proposals.shape[0], proposals.shape[1]
        return (box_encodings.reshape(batch, num_proposals, -1, 4),
                class_logits.reshape(batch, num_proposals, -1), classifier_features)

    def tf2_variable_map(self) -> dict[str, Target]:
        raise CheckpointError("R-FCN: the OD API's TF2 release has no R-FCN model or checkpoint "
                              "layout to import (its R-FCN checkpoints are TF1 name-based ones)")
