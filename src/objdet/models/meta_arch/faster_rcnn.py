"""The Faster R-CNN meta-architecture (Ren et al. 2015) as the OD API's ``FasterRCNNMetaArch``
runs it with a single-map Keras extractor, or with an FPN one (a :class:`PyramidFeatureExtractor`:
anchors, RPN and crops on every pyramid level, :mod:`~objdet.models.meta_arch.faster_rcnn_pyramid`).

1. The extractor's first stage maps the canvas to a stride-16 map; the
   :class:`~objdet.models.meta_arch.faster_rcnn_heads.RegionProposalHead` predicts box codes
   and (background, object) logits for grid anchors, which are clipped to the canvas.
2. Proposals: decoded RPN boxes, NMS by objectness probability, clipped to each image's window,
   at most ``max_proposals`` (in training: a balanced sample of ``second_stage_batch_size`` of
   them, :mod:`~objdet.models.meta_arch.faster_rcnn_training`).
3. Each proposal is cropped from the map (:func:`~objdet.models.layers.crop_and_resize.crop_and_pool`),
   run through the extractor's second stage and the box predictor.
4. Post-processing: codes decoded against the proposals, per-class NMS, clip to the image.
5. Mask R-CNN (a ``mask_head``, the OD API's ``number_of_stages: 3``): each detection is
   cropped from the map again, run through the extractor's second stage and the
   :class:`~objdet.models.meta_arch.faster_rcnn_heads.MaskRcnnMaskHead`; the mask of its class
   (sigmoid) is reframed to the input image (``_predict_third_stage``, then eval_util's
   ``reframe_box_masks_to_image_masks``). In training the head runs on the sampled proposals'
   features and the loss adds the mask loss.

Contract (DESIGN.md, models/contract.py): train mode ``model(images, targets) ->`` the OD API's
four named losses; eval mode ``model(images) -> list`` of ``{"boxes" [D, 4] (x1, y1, x2, y2)
input-image pixels, "scores" [D], "labels" [D] label-map ids}`` (+ ``"masks" [D, 1, H, W]``
float probabilities over the input image with a mask head; targets then need ``"masks"
[N, H, W]`` 0/1). All boxes inside are ``(x1, y1, x2, y2)`` canvas pixels.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from objdet.errors import DataError
from objdet.models.box_coders import FasterRcnnBoxCoder
from objdet.models.checkpoints.variable_map import Target
from objdet.models.grid_anchor_generator import GridAnchorGenerator
from objdet.models.image_resizers import ImageBatch, ImageResizer, batch_images
from objdet.models.layers.crop_and_resize import crop_and_pool
from objdet.models.meta_arch.faster_rcnn_heads import (
    MaskRcnnBoxPredictor,
    MaskRcnnMaskHead,
    RegionProposalHead,
)
from objdet.models.meta_arch.faster_rcnn_masks import (
    canvas_masks,
    reframe_box_masks_to_image_masks,
    select_class_masks,
)
from objdet.models.meta_arch.faster_rcnn_postprocessing import (
    SecondStageNonMaxSuppression,
    select_proposals,
)
from objdet.models.meta_arch.faster_rcnn_pyramid import (
    FirstStageMultiscaleAnchors,
    fpn_box_levels,
    multilevel_crop_and_pool,
    pack_pyramid,
    unpack_pyramid,
)
from objdet.models.meta_arch.faster_rcnn_training import FasterRcnnLoss


class FasterRcnnFeatureExtractor(Protocol):
    proposal_channels: int
    box_classifier_channels: int

    def preprocess(self, images: Tensor) -> Tensor: ...
    def extract_proposal_features(self, images: Tensor) -> Tensor | list[Tensor]: ...
    def extract_box_classifier_features(self, crops: Tensor) -> Tensor: ...
    def tf2_variable_map(self) -> dict[str, Target]: ...
    def tf2_classification_map(self) -> dict[str, Target]: ...


@runtime_checkable
class PyramidFeatureExtractor(Protocol):
    """An extractor whose ``extract_proposal_features`` returns a list of maps (finest first)
    of the sizes ``pyramid_sizes(canvas_height, canvas_width)`` says."""

    def pyramid_sizes(self, height: int, width: int) -> list[tuple[int, int]]: ...


class FasterRCNN(nn.Module):
    """Two-stage detector (see the module docstring). ``num_classes`` excludes background."""

    # ``predict``'s arguments and the tensors it returns, as an export serializes them.
    graph_inputs: tuple[str, ...] = ("preprocessed_inputs", "true_image_shapes")
    graph_outputs: tuple[str, ...] = (
        "rpn_box_encodings", "rpn_objectness", "anchors", "proposal_boxes", "num_proposals",
        "refined_box_encodings", "class_logits",
    )

    def __init__(
        self,
        *,
        num_classes: int,
        image_resizer: ImageResizer,
        feature_extractor: nn.Module,  # a FasterRcnnFeatureExtractor
        anchor_generator: GridAnchorGenerator | FirstStageMultiscaleAnchors,
        proposal_head: RegionProposalHead,
        box_predictor: MaskRcnnBoxPredictor,
        box_coder: FasterRcnnBoxCoder,
        first_stage_nms_score_threshold: float,
        first_stage_nms_iou_threshold: float,
        first_stage_max_proposals: int,
        initial_crop_size: int,
        maxpool_kernel_size: int,
        maxpool_stride: int,
        postprocessor: SecondStageNonMaxSuppression,
        loss: FasterRcnnLoss,
        clip_anchors_to_image: bool = False,
        mask_head: MaskRcnnMaskHead | None = None,
        native_crop_and_resize: bool = False,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.image_resizer = image_resizer
        self.feature_extractor = feature_extractor
        self.anchor_generator = anchor_generator
        self.proposal_head = proposal_head
        self.box_predictor = box_predictor
        self.box_coder = box_coder
        self.first_stage_nms_score_threshold = first_stage_nms_score_threshold
        self.first_stage_nms_iou_threshold = first_stage_nms_iou_threshold
        self.first_stage_max_proposals = first_stage_max_proposals
        self.initial_crop_size = initial_crop_size
        self.maxpool_kernel_size, self.maxpool_stride = maxpool_kernel_size, maxpool_stride
        # tf.image.crop_and_resize (not the matmul crop): samples past the map are 0 whole
        self.native_crop_and_resize = native_crop_and_resize
        self.postprocessor = postprocessor
        self.loss = loss
        self.clip_anchors_to_image = clip_anchors_to_image
        self.mask_head = mask_head
        if mask_head is not None:  # the third stage runs on them after NMS (postprocess)
            self.graph_outputs = (*FasterRCNN.graph_outputs, "rpn_features_to_crop")
        self.is_pyramid = isinstance(feature_extractor, PyramidFeatureExtractor)

    @property
    def max_detections(self) -> int:
        return self.postprocessor.max_total_detections

    def resize_batch(self, images: list[Tensor]) -> ImageBatch:
        """Images ``[3, H, W]`` in [0, 1] -> the canvas batch. The OD API resizes and pads
        the 0..255 image before its preprocessing: its ``per_channel_pad_value`` is /255 here."""
        pad = tuple(value / 255.0 for value in self.image_resizer.pad_value)
        return batch_images(images, self.image_resizer, pad_value=(pad[0], pad[1], pad[2]))

    def backbone(self) -> nn.Module:
        """What a ``classification`` fine-tune checkpoint fills: the feature extractor."""
        return self.feature_extractor

    def tf2_variable_map(self) -> dict[str, Target]:
        """The OD API's TF2 checkpoint keys -> this model's state_dict names."""
        extractor: FasterRcnnFeatureExtractor = self.feature_extractor  # type: ignore[assignment]
        parts: list[tuple[str, str, dict[str, Target]]] = [
            ("model/", "feature_extractor", extractor.tf2_variable_map()),
            ("model/", "proposal_head", self.proposal_head.tf2_variable_map()),
            ("model/_mask_rcnn_box_predictor/", "box_predictor",
             self.box_predictor.tf2_variable_map()),
        ]
        if self.mask_head is not None:
            parts.append(("model/_mask_rcnn_box_predictor/", "mask_head",
                          self.mask_head.tf2_variable_map()))
        return {tf_prefix + key: Target(f"{name}.{target.name}", target.layout)
                for tf_prefix, name, targets in parts for key, target in targets.items()}

    def tf2_classification_map(self) -> dict[str, Target]:
        """The backbone's variables as a TF2 classification checkpoint holds them
        (``feature_extractor/...``)."""
        extractor: FasterRcnnFeatureExtractor = self.feature_extractor  # type: ignore[assignment]
        return {key: Target(f"feature_extractor.{target.name}", target.layout)
                for key, target in extractor.tf2_classification_map().items()}

    def forward(
        self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None
    ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        """Losses in train mode (``targets`` required), detections in eval mode."""
        batch = self.resize_batch(images)
        if self.training:
            if targets is None:
                raise ValueError("FasterRCNN in train mode needs targets; call model.eval() "
                                 "to detect")
            gt_boxes, gt_labels, gt_weights = self._canvas_targets(targets, batch)
            gt_masks = self._canvas_masks(targets, batch) if self.mask_head is not None else None
            return self.loss(self, batch, gt_boxes, gt_labels, gt_weights, gt_masks)
        predictions = self.predict(batch.images, true_image_shapes(batch.resized_sizes))
        return self.postprocess(predictions, batch.resized_sizes, batch.original_sizes)

    def predict_first_stage(self, images: Tensor) -> dict[str, Tensor]:
        """Canvas ``[B, 3, H, W]`` in [0, 1] -> ``features`` (the map ``[B, C, h, w]``, stride
        16; from a pyramid extractor its levels packed ``[B, C, sum h_l * w_l]``,
        :func:`~objdet.models.meta_arch.faster_rcnn_pyramid.pack_pyramid`),
        ``rpn_box_encodings [B, A, 4]``, ``rpn_objectness [B, A, 2]`` logits and ``anchors
        [A, 4]`` (level by level) clipped to the canvas (in training without
        ``clip_anchors_to_image``: unclipped; the loss drops those that leave the canvas)."""
        extractor: FasterRcnnFeatureExtractor = self.feature_extractor  # type: ignore[assignment]
        features = extractor.extract_proposal_features(extractor.preprocess(images))
        maps = features if isinstance(features, list) else [features]
        box_encodings, objectness = self.proposal_head(maps)
        height, width = int(images.shape[2]), int(images.shape[3])
        anchors = self.anchor_generator([(int(level.shape[2]), int(level.shape[3]))
                                         for level in maps], height, width).to(box_encodings)
        if not self.training or self.clip_anchors_to_image:
            # Anchors are centred inside the canvas (an FPN's too, its canvas being a multiple
            # of 32 in the OD API, which fails otherwise), so clipping leaves each some area
            # and the OD API's eval-time filter of empty anchors never removes one.
            anchors = clip_boxes(anchors, (height, width))
        return {"features": pack_pyramid(features) if isinstance(features, list) else features,
                "rpn_box_encodings": box_encodings, "rpn_objectness": objectness,
                "anchors": anchors}

    def feature_maps(self, features: Tensor, canvas_size: tuple[int, int]) -> list[Tensor]:
        """``predict_first_stage``'s ``features`` -> the maps ``[B, C, h_l, w_l]`` (one
        without a pyramid)."""
        if not self.is_pyramid:
            return [features]
        extractor: PyramidFeatureExtractor = self.feature_extractor  # type: ignore[assignment]
        return unpack_pyramid(features, extractor.pyramid_sizes(*canvas_size))

    def propose(self, first_stage: dict[str, Tensor],
                image_sizes: list[tuple[int, int]] | Tensor) -> tuple[Tensor, Tensor]:
        """``image_sizes``: (height, width) of each image on the canvas (a list, or ``[B, 2+]``
        as in ``true_image_shapes``) -> proposals ``[B, max_proposals, 4]`` (zero-padded),
        ``num_proposals [B]``."""
        boxes = self.box_coder.decode(first_stage["rpn_box_encodings"].detach(),
                                      first_stage["anchors"][None])  # [B, A, 4]
        objectness = first_stage["rpn_objectness"].detach().softmax(dim=-1)[..., 1]  # [B, A]
        windows = (image_sizes[:, :2] if isinstance(image_sizes, Tensor)
                   else torch.tensor(image_sizes, device=boxes.device).reshape(-1, 2))
        return select_proposals(boxes, objectness, windows,
                                score_threshold=self.first_stage_nms_score_threshold,
                                iou_threshold=self.first_stage_nms_iou_threshold,
                                max_proposals=self.first_stage_max_proposals)

    def box_classifier_features(self, features: Tensor, boxes: Tensor,
                                canvas_size: tuple[int, int] | None = None) -> Tensor:
        """Map ``[B, C, h, w]`` (a pyramid: packed, with the ``canvas_size`` (H, W) it came
        from), boxes ``[B, N, 4]`` (x1, y1, x2, y2) as fractions of the canvas -> the
        extractor's second-stage features ``[B*N, C', h', w']``. A pyramid's boxes are each
        cropped from the level their size picks (the OD API's ``fpn_feature_levels``)."""
        extractor: FasterRcnnFeatureExtractor = self.feature_extractor  # type: ignore[assignment]
        if not self.is_pyramid:
            crops = crop_and_pool(features, boxes, self.initial_crop_size,
                                  self.maxpool_kernel_size, self.maxpool_stride,
                                  zero_outside_samples=self.native_crop_and_resize)  # [B*N, C, k, k]
            return extractor.extract_box_classifier_features(crops)
        if canvas_size is None:
            raise ValueError("box_classifier_features: a feature pyramid needs the canvas size")
        maps = self.feature_maps(features, canvas_size)
        levels = fpn_box_levels(boxes, canvas_size, len(maps))  # [B, N]
        crops = multilevel_crop_and_pool(maps, boxes, levels, self.initial_crop_size,
                                         self.maxpool_kernel_size, self.maxpool_stride,
                                         zero_outside_samples=self.native_crop_and_resize)
        return extractor.extract_box_classifier_features(crops)

    def predict_second_stage(self, features: Tensor, proposals: Tensor,
                             canvas_size: tuple[int, int]) -> tuple[Tensor, Tensor]:
        """Map ``[B, C, h, w]``, proposals ``[B, P, 4]`` canvas pixels ->
        ``refined_box_encodings [B, P, C' (1 or num_classes), 4]``, ``class_logits [B, P, K+1]``."""
        refined, class_logits, _ = self.second_stage_outputs(features, proposals, canvas_size)
        return refined, class_logits

    def second_stage_outputs(self, features: Tensor, proposals: Tensor,
                             canvas_size: tuple[int, int]) -> tuple[Tensor, Tensor, Tensor]:
        """:meth:`predict_second_stage`'s two outputs and the box classifier features
        ``[B*P, C', h', w']`` they came from (what the mask head sees in training)."""
        height, width = canvas_size
        normalized = proposals / proposals.new_tensor([width, height, width, height])
        classifier_features = self.box_classifier_features(features, normalized, canvas_size)
        box_encodings, class_logits = self.box_predictor(classifier_features)
        batch, num_proposals = proposals.shape[0], proposals.shape[1]  # symbolic under export
        return (box_encodings.reshape(batch, num_proposals, -1, 4),
                class_logits.reshape(batch, num_proposals, -1), classifier_features)

    def predict_masks(self, features: Tensor, boxes: Tensor, labels: Tensor) -> Tensor:
        """The third stage for one image (``_predict_third_stage`` in eval): map
        ``[1, C, h, w]``, detections ``boxes [D, 4]`` (x1, y1, x2, y2) as fractions of the
        image's window on the canvas, ``labels [D]`` 1..K -> mask probabilities
        ``[D, mask_height, mask_width]`` over each box.

        As the OD API, the boxes are cropped from the canvas map in the frame of the image
        window (its NMS returns them so, ``change_coordinate_frame``), not of the canvas: the
        same where the image fills the canvas, scaled away from the origin by canvas / window
        where it is padded (the parity fixture's canvas is padded, so this is checked)."""
        if self.mask_head is None:
            raise ValueError("predict_masks needs a mask head (predict_instance_masks)")
        mask_logits = self.mask_head(self.box_classifier_features(features, boxes[None]))
        return select_class_masks(mask_logits, labels).sigmoid()

    def predict(self, images: Tensor, true_image_shapes: Tensor | None = None
                ) -> dict[str, Tensor]:
        """Canvas ``[B, 3, H, W]`` in [0, 1] -> the raw tensors of :attr:`graph_outputs`.

        ``true_image_shapes``: int ``[B, 3]`` (height, width, channels) of each resized image
        on the canvas, as the OD API's: the window proposals are clipped to (default: the
        whole canvas, as for fixed-shape resizers). ``proposal_boxes [B, P, 4]`` are canvas
        pixels, zero after ``num_proposals [B]``."""
        canvas_size = (int(images.shape[2]), int(images.shape[3]))
        sizes = (true_image_shapes if true_image_shapes is not None
                 else [canvas_size] * int(images.shape[0]))
        first_stage = self.predict_first_stage(images)
        proposals, num_proposals = self.propose(first_stage, sizes)
        refined, class_logits = self.predict_second_stage(first_stage["features"], proposals,
                                                          canvas_size)
        masks_input = {} if self.mask_head is None else {"rpn_features_to_crop": first_stage["features"]}
        return {
            **masks_input,
            "rpn_box_encodings": first_stage["rpn_box_encodings"],
            "rpn_objectness": first_stage["rpn_objectness"],
            "anchors": first_stage["anchors"],
            "proposal_boxes": proposals,
            "num_proposals": num_proposals,
            "refined_box_encodings": refined,
            "class_logits": class_logits,
        }

    def postprocess(
        self,
        predictions: dict[str, Tensor],
        resized_sizes: list[tuple[int, int]],
        original_sizes: list[tuple[int, int]],
    ) -> list[dict[str, Tensor]]:
        """Raw predictions -> per-image detections in input-image pixels (with a mask head,
        also ``masks [D, 1, H, W]``, which needs ``rpn_features_to_crop`` in ``predictions``)."""
        proposals = predictions["proposal_boxes"]  # [B, P, 4]
        boxes = self.box_coder.decode(predictions["refined_box_encodings"],
                                      proposals[:, :, None, :])  # [B, P, C', 4]
        detections = self.postprocessor(boxes, predictions["class_logits"],
                                        predictions["num_proposals"], resized_sizes)
        if self.mask_head is not None and "rpn_features_to_crop" not in predictions:
            raise ValueError("FasterRCNN with a mask head: postprocess needs the "
                             "rpn_features_to_crop prediction (predict returns it)")
        for index, (detection, resized, original) in enumerate(
                zip(detections, resized_sizes, original_sizes)):
            window = detection["boxes"].new_tensor([resized[1], resized[0]] * 2)
            if self.mask_head is not None:
                detection["masks"] = self._image_masks(
                    predictions["rpn_features_to_crop"][index:index + 1],
                    detection["boxes"] / window, detection["labels"], original)
            factors = detection["boxes"].new_tensor(
                [original[1] / resized[1], original[0] / resized[0]] * 2)
            detection["boxes"] = detection["boxes"] * factors
        return detections

    def _image_masks(self, features: Tensor, boxes: Tensor, labels: Tensor,
                     image_size: tuple[int, int]) -> Tensor:
        """Detections of one image (``boxes [D, 4]`` fractions of its window) -> mask
        probabilities ``[D, 1, H, W]`` over the input image."""
        if boxes.shape[0] == 0:
            return boxes.new_zeros(0, 1, *image_size)
        box_masks = self.predict_masks(features, boxes, labels)
        return reframe_box_masks_to_image_masks(box_masks, boxes, image_size)[:, None]

    def _canvas_masks(self, targets: list[dict[str, Tensor]], batch: ImageBatch) -> list[Tensor]:
        """Per-image instance masks ``[N, H, W]`` (input pixels) -> float ``[N, H_c, W_c]``
        on the canvas, as the OD API's resizer brings them there."""
        canvas = (int(batch.images.shape[2]), int(batch.images.shape[3]))
        masks = []
        for index, (target, original, resized) in enumerate(
                zip(targets, batch.original_sizes, batch.resized_sizes)):
            count = int(torch.as_tensor(target["boxes"]).reshape(-1, 4).shape[0])
            image_masks = _check_masks(target, index, original, count).to(batch.images.device)
            masks.append(canvas_masks(image_masks, resized, canvas))
        return masks

    def _canvas_targets(self, targets: list[dict[str, Tensor]], batch: ImageBatch
                        ) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        """Per-image targets (input pixels) -> boxes in canvas pixels, labels, weights."""
        if len(targets) != len(batch.original_sizes):
            raise DataError(f"{len(targets)} targets for {len(batch.original_sizes)} images")
        scales = batch.scales().flip(1).repeat(1, 2)  # [B, 4] (x, y, x, y) factors
        boxes, labels, weights = [], [], []
        for index, target in enumerate(targets):
            image_boxes = torch.as_tensor(target["boxes"]).to(scales).reshape(-1, 4)
            image_labels = torch.as_tensor(target["labels"], device=scales.device).long()
            image_labels = image_labels.reshape(-1)
            if image_labels.shape[0] != image_boxes.shape[0]:
                raise DataError(f"targets[{index}]: {image_boxes.shape[0]} boxes but "
                                f"{image_labels.shape[0]} labels")
            if image_labels.numel() and (image_labels.min() < 1
                                         or image_labels.max() > self.num_classes):
                raise DataError(f"targets[{index}]: labels must be label-map ids in "
                                f"1..{self.num_classes}, found {sorted(set(image_labels.tolist()))}")
            image_weights = target.get("weights")
            boxes.append(image_boxes * scales[index])
            labels.append(image_labels)
            weights.append(torch.ones_like(image_labels, dtype=scales.dtype)
                           if image_weights is None
                           else torch.as_tensor(image_weights).to(scales).reshape(-1))
        return boxes, labels, weights


def _check_masks(target: dict[str, Tensor], index: int, size: tuple[int, int],
                 count: int) -> Tensor:
    """``targets[index]["masks"]`` as ``[count, H, W]`` over the input image of ``size``."""
    if "masks" not in target:
        raise DataError(f"targets[{index}] has no 'masks': Mask R-CNN trains on instance masks "
                        "(set load_instance_masks: true in the train_input_reader)")
    masks = torch.as_tensor(target["masks"])
    if masks.dim() != 3 or masks.shape[0] != count or tuple(masks.shape[1:]) != size:
        raise DataError(f"targets[{index}]: masks of shape {tuple(masks.shape)}, expected "
                        f"[{count}, {size[0]}, {size[1]}] (one per box, the image's size)")
    return masks


def true_image_shapes(sizes: list[tuple[int, int]]) -> Tensor:
    """(height, width) per image -> the OD API's ``true_image_shapes`` int32 ``[B, 3]``."""
    return torch.tensor([[height, width, 3] for height, width in sizes], dtype=torch.int32)


def clip_boxes(boxes: Tensor, size: tuple[int, int]) -> Tensor:
    """``[..., 4]`` (x1, y1, x2, y2) clipped to ``[0, width] x [0, height]``."""
    height, width = size
    return torch.minimum(boxes.clamp(min=0), boxes.new_tensor([width, height, width, height]))
