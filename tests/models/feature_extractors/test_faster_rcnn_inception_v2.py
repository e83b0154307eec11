"""faster_rcnn_inception_v2: slim's inception_v2_base cut at Mixed_4e (first stage) and its
Mixed_5a-5c on each crop (second stage). Together they are the whole base whose layers
tests/models/test_ssd_inception_parity.py checks against the OD API; here the cut, the
strides, the preprocessing, the frozen batch norm and the builder's choice."""

from __future__ import annotations

import pytest
import torch

from objdet.models.backbones.slim_inception import INCEPTION_V2, SlimInception
from objdet.models.feature_extractors.faster_rcnn_inception_v2 import (
    MIN_DEPTH,
    FasterRcnnInceptionV2FeatureExtractor,
)
from objdet.models.feature_extractors.faster_rcnn_registry import (
    FASTER_RCNN_FEATURE_EXTRACTORS,
    FasterRcnnExtractorParams,
)


def _extractor(**kwargs: object) -> FasterRcnnInceptionV2FeatureExtractor:
    torch.manual_seed(0)
    return FasterRcnnInceptionV2FeatureExtractor(depth_multiplier=0.25, **kwargs)  # type: ignore[arg-type]


def test_the_two_stages_are_the_whole_inception_v2_base() -> None:
    extractor = _extractor().eval()
    whole = SlimInception(endpoints=INCEPTION_V2, depth_multiplier=0.25, min_depth=MIN_DEPTH,
                          hyperparams=extractor.first_stage._hyperparams).eval()
    state = {f"layers.{name}": value for part in (extractor.first_stage, extractor.second_stage)
             for name, value in part.layers.state_dict().items()}
    whole.load_state_dict(state)  # strict: the same layers, by slim's scope names
    images = extractor.preprocess(torch.rand(2, 3, 65, 97))
    with torch.no_grad():
        proposal = extractor.extract_proposal_features(images)
        classifier = extractor.extract_box_classifier_features(proposal)
        endpoints = whole(images)
    assert proposal.shape == (2, extractor.proposal_channels, 5, 7)  # stride 16, 'SAME'
    assert classifier.shape == (2, extractor.box_classifier_channels, 3, 4)
    torch.testing.assert_close(proposal, endpoints["Mixed_4e"])
    torch.testing.assert_close(classifier, endpoints["Mixed_5c"])


def test_full_width_depths_and_preprocessing() -> None:
    extractor = FasterRcnnInceptionV2FeatureExtractor()
    assert (extractor.proposal_channels, extractor.box_classifier_channels) == (576, 1024)
    pixels = torch.tensor([0.0, 0.5, 1.0]).view(1, 3, 1, 1)
    torch.testing.assert_close(extractor.preprocess(pixels).flatten(), torch.tensor([-1.0, 0.0, 1.0]))


@pytest.mark.parametrize("trainable", [False, True])
def test_batch_norm_trains_only_when_trainable(trainable: bool) -> None:
    extractor = _extractor(batch_norm_trainable=trainable).train()
    norms = [m for m in extractor.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and all(norm.training == trainable for norm in norms)


def test_the_registry_builds_it_and_checks_the_stride() -> None:
    factory = FASTER_RCNN_FEATURE_EXTRACTORS["faster_rcnn_inception_v2"]
    assert isinstance(factory(FasterRcnnExtractorParams(first_stage_features_stride=8,
                                                        depth_multiplier=0.25)),
                      FasterRcnnInceptionV2FeatureExtractor)
    with pytest.raises(ValueError, match="first_stage_features_stride must be 8 or 16, got 32"):
        factory(FasterRcnnExtractorParams(first_stage_features_stride=32))
    with pytest.raises(ValueError, match="too small"):
        _extractor().extract_proposal_features(torch.zeros(1, 3, 32, 64))
