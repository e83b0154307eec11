"""The SSD meta-architecture (Liu et al. 2016) as the OD API's ``SSDMetaArch`` runs it.

Contract (DESIGN.md): train mode ``model(images, targets) -> {"Loss/localization_loss",
"Loss/classification_loss"}`` (the OD API's names); eval mode ``model(images) -> list`` of
``{"boxes" [D, 4] (x1, y1, x2, y2) input-image pixels, "scores" [D], "labels" [D] int64
label-map ids}``. ``images`` is a list of float ``[3, H, W]`` tensors in [0, 1].
For export, ``predict`` (batched canvas -> raw tensors) and ``postprocess`` are separate.
"""

from __future__ import annotations

from typing import Protocol, cast, runtime_checkable

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from objdet.errors import DataError, ObjdetError
from objdet.models.box_coders import FasterRcnnBoxCoder
from objdet.models.checkpoints.variable_map import Target
from objdet.models.hard_example_miner import HardExampleMiner
from objdet.models.image_resizers import ImageBatch, ImageResizer, batch_images
from objdet.models.postprocessing import BatchNonMaxSuppression
from objdet.models.target_assigner import AssignedTargets, TargetAssigner

LOCALIZATION_LOSS = "Loss/localization_loss"
CLASSIFICATION_LOSS = "Loss/classification_loss"


class AnchorGenerator(Protocol):
    def num_anchors_per_location(self) -> list[int]: ...
    def __call__(
        self, feature_map_sizes: list[tuple[int, int]], image_height: int, image_width: int
    ) -> Tensor: ...


class FeatureExtractor(Protocol):
    """``preprocess(images [B, 3, H, W] in [0, 1])`` -> the network's input range;
    ``__call__(preprocessed) -> list`` of feature maps, finest first; ``out_channels``."""

    out_channels: list[int]

    def preprocess(self, images: Tensor) -> Tensor: ...
    def __call__(self, images: Tensor) -> list[Tensor]: ...


@runtime_checkable
class MirrorsTF2Object(Protocol):
    """A module with a TF2 checkpoint counterpart: keys relative to its OD API object."""

    def tf2_variable_map(self) -> dict[str, Target]: ...


class BoxPredictor(Protocol):
    def __call__(self, features: list[Tensor]) -> tuple[Tensor, Tensor]: ...


class SSDLoss:
    """Weighted classification + localization losses, optionally hard-mined, normalized by the
    number of matched anchors (and the code size for localization) as configured."""

    def __init__(
        self,
        *,
        classification_loss: nn.Module,
        localization_loss: nn.Module,
        classification_weight: float = 1.0,
        localization_weight: float = 1.0,
        hard_example_miner: HardExampleMiner | None = None,
        normalize_loss_by_num_matches: bool = True,
        normalize_loc_loss_by_codesize: bool = False,
        code_size: int = 4,
    ) -> None:
        self.classification_loss, self.localization_loss = classification_loss, localization_loss
        self.classification_weight = classification_weight
        self.localization_weight = localization_weight
        self.hard_example_miner = hard_example_miner
        self.normalize_loss_by_num_matches = normalize_loss_by_num_matches
        self.normalize_loc_loss_by_codesize = normalize_loc_loss_by_codesize
        self.code_size = code_size

    def __call__(
        self,
        box_encodings: Tensor,
        class_logits: Tensor,
        targets: AssignedTargets,
        decoded_boxes: Tensor,
    ) -> dict[str, Tensor]:
        """Predictions ``[B, A, code]``/``[B, A, K]``, targets, decoded boxes ``[B, A, 4]``
        (for hard mining) -> the two named scalar losses."""
        localization = self.localization_loss(
            box_encodings, targets.box_targets, targets.box_weights
        )  # [B, A]
        classification = self.classification_loss(
            class_logits, targets.class_targets, targets.class_weights
        )  # [B, A]
        if self.hard_example_miner is not None:
            localization_sum, classification_sum = self.hard_example_miner(
                localization, classification, decoded_boxes, targets.matches
            )
        else:
            localization_sum, classification_sum = localization.sum(), classification.sum()
        normalizer = box_encodings.new_tensor(1.0)
        if self.normalize_loss_by_num_matches:
            normalizer = targets.box_weights.sum().clamp(min=1.0)
        localization_normalizer = normalizer * (
            self.code_size if self.normalize_loc_loss_by_codesize else 1
        )
        return {
            LOCALIZATION_LOSS: self.localization_weight
            * localization_sum
            / localization_normalizer,
            CLASSIFICATION_LOSS: self.classification_weight * classification_sum / normalizer,
        }


class SSD(nn.Module):
    """Single-shot detector: feature extractor + box predictor over anchors (see module doc).

    ``num_classes`` excludes background; the predictor emits ``num_classes + 1`` columns,
    column 0 being background (the OD API's ``add_background_class``), or ``num_classes``
    columns with ``add_background_class=False`` (EfficientDet).
    """

    def __init__(
        self,
        *,
        num_classes: int,
        image_resizer: ImageResizer,
        feature_extractor: nn.Module,  # a FeatureExtractor
        anchor_generator: AnchorGenerator,
        box_predictor: BoxPredictor,
        box_coder: FasterRcnnBoxCoder,
        target_assigner: TargetAssigner,
        loss: SSDLoss,
        postprocessor: BatchNonMaxSuppression,
        pad_to_multiple: int = 1,
        freeze_batchnorm: bool = False,
        add_background_class: bool = True,
    ) -> None:
        super().__init__()
        self.add_background_class = add_background_class
        self.num_classes = num_classes
        self.image_resizer = image_resizer
        self.feature_extractor = feature_extractor
        self.anchor_generator = anchor_generator
        self.box_predictor = box_predictor
        self.box_coder, self.target_assigner = box_coder, target_assigner
        self.loss, self.postprocessor = loss, postprocessor
        self.pad_to_multiple = pad_to_multiple
        self.freeze_batchnorm = freeze_batchnorm
        if freeze_batchnorm:
            for norm in self._batch_norms():
                norm.requires_grad_(False)

    # The tensors ``predict`` returns that an export serializes, in this order.
    graph_inputs: tuple[str, ...] = ("preprocessed_inputs",)  # predict(canvas)
    graph_outputs: tuple[str, ...] = ("box_encodings", "class_logits", "anchors")

    @property
    def max_detections(self) -> int:
        return self.postprocessor.max_total_detections

    def resize_batch(self, images: list[Tensor]) -> ImageBatch:
        """Images ``[3, H, W]`` in [0, 1] -> the canvas batch the network sees.

        The OD API's SSD normalizes before it resizes, so its padding (``pad_to_max_dimension``,
        ``pad_to_multiple``) holds ``per_channel_pad_value`` (0 by default) *after* the
        extractor's preprocessing; the canvas is padded with the [0, 1] value that the
        (per-channel affine) preprocessing maps there."""
        return batch_images(images, self.image_resizer, self.pad_to_multiple,
                            pad_value=self._canvas_pad_value())

    def _canvas_pad_value(self) -> tuple[float, float, float]:
        extractor = cast(FeatureExtractor, self.feature_extractor)
        with torch.no_grad():
            at_zero = extractor.preprocess(torch.zeros(1, 3, 1, 1)).reshape(3)
            slope = extractor.preprocess(torch.ones(1, 3, 1, 1)).reshape(3) - at_zero
        target = torch.tensor(self.image_resizer.pad_value, dtype=torch.float64)
        value = (target - at_zero.double()) / slope.double()
        return (float(value[0]), float(value[1]), float(value[2]))

    def backbone(self) -> nn.Module:
        """What a ``classification`` fine-tune checkpoint fills: the feature extractor."""
        return self.feature_extractor

    def tf2_variable_map(self) -> dict[str, Target]:
        """The OD API's TF2 checkpoint keys (``model/_feature_extractor/...``,
        ``model/_box_predictor/...``) -> this model's state_dict names."""
        variable_map: dict[str, Target] = {}
        for tf_path, name in (("model/_feature_extractor/", "feature_extractor"),
                              ("model/_box_predictor/", "box_predictor")):
            component = getattr(self, name)
            if not isinstance(component, MirrorsTF2Object):
                raise ObjdetError(
                    f"{type(component).__name__} ({name}) has no TF2 variable map: TF2 "
                    "checkpoints cannot be imported into this model"
                )
            for key, target in component.tf2_variable_map().items():
                variable_map[tf_path + key] = Target(f"{name}.{target.name}", target.layout)
        return variable_map

    def tf2_classification_map(self) -> dict[str, Target]:
        """The backbone's variables as a TF2 *classification* checkpoint holds them
        (``tf.train.Checkpoint(feature_extractor=backbone)``: ``feature_extractor/...``)."""
        prefix = "model/_feature_extractor/" + getattr(
            self.feature_extractor, "tf2_backbone_prefix", "classification_backbone/")
        return {"feature_extractor/" + key[len(prefix):]: target
                for key, target in self.tf2_variable_map().items() if key.startswith(prefix)}

    def _batch_norms(self) -> list[nn.Module]:
        return [
            module
            for module in self.modules()
            if isinstance(module, nn.modules.batchnorm._BatchNorm)
        ]

    def train(self, mode: bool = True) -> SSD:
        super().train(mode)
        if self.freeze_batchnorm:  # the OD API's freeze_batchnorm: moving statistics only
            for norm in self._batch_norms():
                norm.eval()
        return self

    def forward(
        self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None
    ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        """Losses in train mode (``targets`` required), detections in eval mode."""
        batch = self.resize_batch(images)
        predictions = self.predict(batch.images)
        if self.training:
            if targets is None:
                raise ValueError("SSD in train mode needs targets; call model.eval() to detect")
            return self.compute_loss(predictions, targets, batch)
        return self.postprocess(predictions, batch.resized_sizes, batch.original_sizes)

    def predict(self, images: Tensor) -> dict[str, Tensor]:
        """Canvas ``[B, 3, H, W]`` in [0, 1] -> ``box_encodings [B, A, 4]``,
        ``class_logits [B, A, K]``, ``anchors [A, 4]`` (x1, y1, x2, y2 canvas pixels)."""
        extractor = cast(FeatureExtractor, self.feature_extractor)
        features = extractor(extractor.preprocess(images))
        box_encodings, class_logits = self.box_predictor(features)
        feature_map_sizes = [(int(feature.shape[2]), int(feature.shape[3])) for feature in features]
        anchors = self.anchor_generator(
            feature_map_sizes, int(images.shape[2]), int(images.shape[3])
        )
        return {
            "box_encodings": box_encodings,
            "class_logits": class_logits,
            "anchors": anchors.to(box_encodings),
        }

    def compute_loss(
        self, predictions: dict[str, Tensor], targets: list[dict[str, Tensor]], batch: ImageBatch
    ) -> dict[str, Tensor]:
        """Predictions + per-image targets (input-image pixels) -> named scalar losses."""
        if len(targets) != len(batch.original_sizes):
            raise DataError(f"{len(targets)} targets for {len(batch.original_sizes)} images")
        anchors = predictions["anchors"]
        scales = batch.scales().flip(1).repeat(1, 2)  # [B, 4] (x, y, x, y) factors
        gt_boxes, gt_classes, gt_weights = [], [], []
        for index, target in enumerate(targets):
            boxes, labels, weights = self._checked_target(index, target, anchors)
            gt_boxes.append(boxes * scales[index])
            one_hot = F.one_hot(labels, self.num_classes + 1).to(anchors)  # [N, 1 + classes]
            gt_classes.append(one_hot if self.add_background_class else one_hot[:, 1:])
            gt_weights.append(weights)
        assigned = self.target_assigner.assign(anchors, gt_boxes, gt_classes, gt_weights)
        decoded = self.box_coder.decode(predictions["box_encodings"], anchors[None])
        return self.loss(
            predictions["box_encodings"], predictions["class_logits"], assigned, decoded
        )

    def _checked_target(
        self, index: int, target: dict[str, Tensor], anchors: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        boxes = torch.as_tensor(target["boxes"]).to(anchors).reshape(-1, 4)
        labels = torch.as_tensor(target["labels"], device=anchors.device).long().reshape(-1)
        if labels.shape[0] != boxes.shape[0]:
            raise DataError(
                f"targets[{index}]: {boxes.shape[0]} boxes but {labels.shape[0]} labels"
            )
        if labels.numel() and (labels.min() < 1 or labels.max() > self.num_classes):
            raise DataError(
                f"targets[{index}]: labels must be label-map ids in 1..{self.num_classes}, "
                f"found {sorted(set(labels.tolist()))}"
            )
        weights = target.get("weights")
        weights = (
            torch.ones_like(labels, dtype=anchors.dtype)
            if weights is None
            else torch.as_tensor(weights).to(anchors).reshape(-1)
        )
        return boxes, labels, weights

    def postprocess(
        self,
        predictions: dict[str, Tensor],
        resized_sizes: list[tuple[int, int]],
        original_sizes: list[tuple[int, int]],
    ) -> list[dict[str, Tensor]]:
        """Raw predictions -> per-image detections in input-image pixels. Kept boxes are
        clipped to the resized image (not its padding) after NMS, as the OD API's clip window
        does."""
        boxes = self.box_coder.decode(predictions["box_encodings"], predictions["anchors"][None])
        detections = self.postprocessor(boxes, predictions["class_logits"], resized_sizes)
        for detection, resized, original in zip(detections, resized_sizes, original_sizes):
            factors = detection["boxes"].new_tensor(
                [original[1] / resized[1], original[0] / resized[0]] * 2
            )
            detection["boxes"] = detection["boxes"] * factors
        return detections
