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
from objdet.models.feature_extractors.ssd_mobilenet import SSD_FEATURE_EXTRACTORS
from objdet.models.ssd import CLASSIFICATION_LOSS, LOCALIZATION_LOSS

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


@pytest.mark.parametrize("extractor", sorted(SSD_FEATURE_EXTRACTORS))
def test_every_feature_extractor_trains_and_detects(extractor: str) -> None:
    _train_and_eval(build_model(parse_model(ssd_config_text(extractor=extractor))))


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


def test_target_scaling_matches_boxes_to_anchors_in_canvas_pixels() -> None:
    model = build_model(parse_model(ssd_config_text(resizer=KEEP_RATIO_RESIZER)))
    image = torch.rand(3, 100, 100)  # resized to 48 x 48
    box = torch.tensor([[0.0, 0.0, 100.0, 100.0]])  # the whole image
    batch_predictions = model.predict(torch.rand(1, 3, 48, 48))
    anchors = batch_predictions["anchors"]
    from objdet.models.image_resizers import batch_images

    batch = batch_images([image], model.image_resizer)
    targets = [{"boxes": box, "labels": torch.tensor([1])}]
    model.train()
    boxes_in_canvas = box * batch.scales().flip(1).repeat(1, 2)
    assert torch.allclose(boxes_in_canvas, torch.tensor([[0.0, 0.0, 48.0, 48.0]]))
    assigned = model.target_assigner.assign(
        anchors, [boxes_in_canvas], [torch.tensor([[0.0, 1.0, 0.0]])], [torch.ones(1)]
    )
    assert (assigned.matches >= 0).any()
    model.compute_loss(batch_predictions, targets, batch)


def test_bad_labels_are_reported() -> None:
    model = build_model(parse_model(ssd_config_text()))
    model.train()
    with pytest.raises(DataError, match=r"targets\[0\].*1\.\.2.*\[3\]"):
        model(IMAGES[:1], [{"boxes": torch.tensor([[0.0, 0, 5, 5]]), "labels": torch.tensor([3])}])
