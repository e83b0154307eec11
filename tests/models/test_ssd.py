import math

import pytest
import torch
from ssd_configs import (
    FOCAL,
    KEEP_RATIO_RESIZER,
    MULTISCALE_ANCHORS,
    SHARED_PREDICTOR,
    SOFTMAX_L2,
    parse_model,
    ssd_config_text,
)

from objdet.errors import DataError
from objdet.models import build_model
from objdet.models.image_resizers import batch_images
from objdet.models.losses import WeightedSigmoidLoss, WeightedSmoothL1Loss
from objdet.models.matchers import IGNORED, UNMATCHED
from objdet.models.meta_arch.ssd import CLASSIFICATION_LOSS, LOCALIZATION_LOSS, SSDLoss
from objdet.models.target_assigner import AssignedTargets

IMAGES = [
    torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0)),
    torch.rand(3, 40, 72, generator=torch.Generator().manual_seed(1)),
]
TARGETS = [
    {
        "boxes": torch.tensor([[8.0, 8.0, 40.0, 48.0], [30.0, 2.0, 60.0, 20.0]]),
        "labels": torch.tensor([1, 2]),
    },
    {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},  # no boxes
]


def _train_and_eval(model: torch.nn.Module) -> list[dict[str, torch.Tensor]]:
    model.train()
    losses = model(IMAGES, TARGETS)
    assert set(losses) == {LOCALIZATION_LOSS, CLASSIFICATION_LOSS}
    total = sum(losses.values())
    assert torch.isfinite(total) and total.item() > 0
    total.backward()
    gradients = [p.grad for p in model.parameters() if p.requires_grad and p.grad is not None]
    assert gradients and all(torch.isfinite(g).all() for g in gradients)
    model.eval()
    with torch.no_grad():
        detections = model(IMAGES)
    assert len(detections) == len(IMAGES)
    for detection, image in zip(detections, IMAGES):
        count = detection["boxes"].shape[0]
        assert detection["boxes"].shape == (count, 4) and detection["scores"].shape == (count,)
        assert detection["labels"].dtype == torch.int64
        assert 0 < count <= 30
        assert set(detection["labels"].tolist()) <= {1, 2}
        height, width = image.shape[1:]
        boxes = detection["boxes"]
        assert (
            (boxes >= 0).all()
            and (boxes[:, [0, 2]] <= width).all()
            and (boxes[:, [1, 3]] <= height).all()
        )
        assert (detection["scores"][:-1] >= detection["scores"][1:]).all()
    return detections


@pytest.mark.parametrize(
    "variant",
    [
        {"predictor": SHARED_PREDICTOR, "anchors": MULTISCALE_ANCHORS, "loss": FOCAL},
        {"loss": SOFTMAX_L2, "score_converter": "SOFTMAX", "resizer": KEEP_RATIO_RESIZER},
        {
            "loss": FOCAL,
            "extra": "encode_background_as_zeros: true freeze_batchnorm: true",
            "extractor": "ssd_mobilenet_v3_small",
        },
    ],
)
def test_predictors_anchors_losses_and_resizers(variant: dict[str, str]) -> None:
    _train_and_eval(build_model(parse_model(ssd_config_text(**variant))))


def test_batch_of_one_image_without_boxes_trains() -> None:
    model = build_model(parse_model(ssd_config_text()))
    model.train()
    losses = model(IMAGES[1:], TARGETS[1:])
    sum(losses.values()).backward()
    assert losses[LOCALIZATION_LOSS].item() == 0.0
    assert losses[CLASSIFICATION_LOSS].item() > 0.0  # hard negatives still count


def test_detections_are_in_input_pixels_for_non_square_images() -> None:
    model = build_model(parse_model(ssd_config_text(resizer=KEEP_RATIO_RESIZER)))
    model.eval()
    image = torch.rand(3, 30, 90)  # resized to 27 x 80 (max_dimension wins)
    with torch.no_grad():
        predictions = model.predict(torch.nn.functional.interpolate(image[None], size=(27, 80)))
        canvas_boxes = model.box_coder.decode(
            predictions["box_encodings"], predictions["anchors"][None]
        )
        detections = model([image])[0]
    # The best detection's box is a predicted canvas box scaled by 90/80 and 30/27.
    scale = torch.tensor([90 / 80, 30 / 27, 90 / 80, 30 / 27])
    canvas = canvas_boxes[0].clamp(min=0)
    canvas = torch.minimum(canvas, torch.tensor([80.0, 27.0, 80.0, 27.0]))
    distances = (canvas * scale - detections["boxes"][0]).abs().sum(dim=1)
    assert distances.min().item() < 1e-3
    assert (detections["boxes"][:, [0, 2]] <= 90).all() and (
        detections["boxes"][:, [1, 3]] <= 30
    ).all()


def _bce_with_logits(logit: float, target: float) -> float:
    """Sigmoid cross entropy, written out: -(z log s(x) + (1 - z) log(1 - s(x)))."""
    probability = 1.0 / (1.0 + math.exp(-logit))
    return -(target * math.log(probability) + (1 - target) * math.log(1 - probability))


def _huber(difference: float) -> float:
    return 0.5 * difference**2 if abs(difference) < 1.0 else abs(difference) - 0.5


@pytest.mark.parametrize(
    ("by_num_matches", "by_code_size", "box_weights"),
    [
        (True, True, [0.5, 1.0, 0.0, 0.0]),  # normalizer: sum of box weights 1.5, not 2 matches
        (True, False, [0.5, 1.0, 0.0, 0.0]),
        (False, True, [0.5, 1.0, 0.0, 0.0]),
        (True, True, [0.0, 0.0, 0.0, 0.0]),  # no match: the normalizer is max(0, 1) = 1
    ],
)
def test_ssd_loss_weights_and_normalizes_as_the_od_api(
    by_num_matches: bool, by_code_size: bool, box_weights: list[float]
) -> None:
    """The OD API's SSDMetaArch.loss: classification_weight * sum(cls) / normalizer and
    localization_weight * sum(loc) / (normalizer * code_size if normalize_loc_loss_by_codesize),
    normalizer = max(sum(box weights), 1) when normalize_loss_by_num_matches, else 1."""
    generator = torch.Generator().manual_seed(3)
    box_encodings = torch.randn(1, 4, 4, generator=generator) * 2
    class_logits = torch.randn(1, 4, 3, generator=generator)
    class_targets = torch.tensor([[[0.0, 1, 0], [0, 0, 1], [1, 0, 0], [1, 0, 0]]])
    class_weights = [0.5, 1.0, 0.7, 0.0]  # matched, matched, negative, ignored
    box_targets = torch.randn(1, 4, 4, generator=generator)
    targets = AssignedTargets(
        class_targets=class_targets,
        class_weights=torch.tensor([class_weights]),
        box_targets=box_targets,
        box_weights=torch.tensor([box_weights]),
        matches=torch.tensor([[0, 1, UNMATCHED, IGNORED]]),
    )
    loss = SSDLoss(
        classification_loss=WeightedSigmoidLoss(),
        localization_loss=WeightedSmoothL1Loss(),
        classification_weight=2.0,
        localization_weight=3.0,
        normalize_loss_by_num_matches=by_num_matches,
        normalize_loc_loss_by_codesize=by_code_size,
        code_size=4,
    )
    result = loss(box_encodings, class_logits, targets, decoded_boxes=torch.zeros(1, 4, 4))
    classification = sum(
        class_weights[a]
        * _bce_with_logits(float(class_logits[0, a, k]), float(class_targets[0, a, k]))
        for a in range(4)
        for k in range(3)
    )
    localization = sum(
        box_weights[a] * _huber(float(box_encodings[0, a, c] - box_targets[0, a, c]))
        for a in range(4)
        for c in range(4)
    )
    normalizer = max(sum(box_weights), 1.0) if by_num_matches else 1.0
    code_size = 4 if by_code_size else 1
    assert result[CLASSIFICATION_LOSS].item() == pytest.approx(2.0 * classification / normalizer)
    assert result[LOCALIZATION_LOSS].item() == pytest.approx(
        3.0 * localization / (normalizer * code_size)
    )


def test_targets_are_scaled_from_input_pixels_to_the_canvas_before_matching() -> None:
    """A 32 x 128 image on a 64 x 64 fixed canvas: y doubles, x halves. The model's loss for a
    box given in input pixels equals the loss of the same box given by hand in canvas pixels."""
    model = build_model(parse_model(ssd_config_text()))  # fixed_shape_resizer 64 x 64
    generator = torch.Generator().manual_seed(2)
    image = torch.rand(3, 32, 128, generator=generator)
    batch = batch_images([image], model.image_resizer)
    targets = [
        {
            "boxes": torch.tensor([[16.0, 4.0, 80.0, 28.0]]),
            "labels": torch.tensor([2]),
            "weights": torch.tensor([0.5]),
        }
    ]
    canvas_box = torch.tensor([[8.0, 8.0, 40.0, 56.0]])  # (16 / 2, 4 * 2, 80 / 2, 28 * 2)
    with torch.no_grad():
        predictions = model.predict(batch.images)
        # distinct logits per class (an untrained model gives many anchors equal ones)
        noise = torch.randn(predictions["class_logits"].shape, generator=generator)
        predictions["class_logits"].copy_(noise)
        losses = model.compute_loss(predictions, targets, batch)
        anchors = predictions["anchors"]
        assigned = model.target_assigner.assign(
            anchors, [canvas_box], [torch.tensor([[0.0, 0.0, 1.0]])], [torch.tensor([0.5])]
        )
        decoded = model.box_coder.decode(predictions["box_encodings"], anchors[None])
        expected = model.loss(
            predictions["box_encodings"], predictions["class_logits"], assigned, decoded
        )
    assert (assigned.matches >= 0).sum() >= 1
    assert assigned.box_weights.sum().item() == pytest.approx(0.5 * (assigned.matches >= 0).sum())
    for name in (LOCALIZATION_LOSS, CLASSIFICATION_LOSS):
        assert expected[name].item() > 0, name  # some positive anchors survive the mining
        assert losses[name].item() == pytest.approx(expected[name].item(), rel=1e-6), name


def test_hard_example_mining_suppresses_overlapping_predicted_boxes() -> None:
    """The OD API's miner runs NMS over the boxes the model predicts (decoded from its box
    encodings), not over the anchors."""
    miner = """classification_loss { weighted_sigmoid {} }
    localization_loss { weighted_smooth_l1 {} }
    hard_example_miner { num_hard_examples: 0 iou_threshold: 0.5 loss_type: LOCALIZATION
                         max_negatives_per_positive: 3 min_negatives_per_image: 2 }"""
    model = build_model(parse_model(ssd_config_text(loss=miner)))
    batch = batch_images(IMAGES[:1], model.image_resizer)
    with torch.no_grad():
        predictions = model.predict(batch.images)
        # predicted boxes well away from their anchors
        noise = torch.randn(1, 80, 4, generator=torch.Generator().manual_seed(0)) * 3
        predictions["box_encodings"].copy_(noise)
        losses = model.compute_loss(predictions, TARGETS[:1], batch)
        anchors = predictions["anchors"]
        scaled = TARGETS[0]["boxes"]  # 64 x 64 image on a 64 x 64 canvas: no scaling
        classes = torch.nn.functional.one_hot(TARGETS[0]["labels"], 3).float()
        assigned = model.target_assigner.assign(anchors, [scaled], [classes], [torch.ones(2)])
        decoded = model.box_coder.decode(predictions["box_encodings"], anchors[None])
        on_predictions = model.loss(
            predictions["box_encodings"], predictions["class_logits"], assigned, decoded
        )
        on_anchors = model.loss(
            predictions["box_encodings"],
            predictions["class_logits"],
            assigned,
            anchors[None].expand_as(decoded),
        )
    for name in (LOCALIZATION_LOSS, CLASSIFICATION_LOSS):
        assert on_predictions[name].item() != pytest.approx(on_anchors[name].item())  # it matters
        assert losses[name].item() == pytest.approx(on_predictions[name].item(), rel=1e-6)


def test_freeze_batchnorm_keeps_moving_statistics_in_train_mode() -> None:
    model = build_model(parse_model(ssd_config_text(extra="freeze_batchnorm: true")))
    model.train()
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    before = [norm.running_mean.clone() for norm in norms]
    model(IMAGES, TARGETS)
    assert norms and all(not norm.training for norm in norms)
    assert all(torch.equal(norm.running_mean, old) for norm, old in zip(norms, before))
    unfrozen = build_model(parse_model(ssd_config_text()))
    unfrozen.train()
    unfrozen(IMAGES, TARGETS)
    moved = [m.running_mean for m in unfrozen.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert any(mean.abs().sum() > 0 for mean in moved)  # without the option they do move


def test_bad_labels_are_reported() -> None:
    model = build_model(parse_model(ssd_config_text()))
    model.train()
    with pytest.raises(DataError, match=r"targets\[0\].*1\.\.2.*\[3\]"):
        model(IMAGES[:1], [{"boxes": torch.tensor([[0.0, 0, 5, 5]]), "labels": torch.tensor([3])}])
    # 0 is the background column, not a label-map id
    with pytest.raises(DataError, match=r"targets\[0\].*1\.\.2.*\[0\]"):
        model(IMAGES[:1], [{"boxes": torch.tensor([[0.0, 0, 5, 5]]), "labels": torch.tensor([0])}])
