"""KEY=VALUE overrides, shortcut keys and the OD API's --config_override snippet."""

from __future__ import annotations

from pathlib import Path

import pytest

import objdet.config as pipeline_config
from objdet.errors import ConfigError
from objdet.protos import input_reader_pb2

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
RACCOON_CONFIG = SHARED_DATA / "raccoon" / "ssd_mobilenet_v1_pets.config"
COSINE_CONFIG = SHARED_DATA / "odapi/configs/tf2/ssd_mobilenet_v2_320x320_coco17_tpu-8.config"
MANUAL_CONFIG = SHARED_DATA / "odapi/configs/tf1_samples/faster_rcnn_resnet101_pets.config"


@pytest.fixture
def raccoon() -> pipeline_config.TrainEvalPipelineConfig:
    return pipeline_config.load(RACCOON_CONFIG)


def test_typed_values_by_dotted_path(raccoon: pipeline_config.TrainEvalPipelineConfig) -> None:
    pipeline_config.apply_overrides(
        raccoon,
        [
            "train_config.batch_size=8",
            "eval_input_reader[0].shuffle=false",
            "train_config.sync_replicas=true",
            "train_input_reader.mask_type=PNG_MASKS",
            "train_input_reader.label_map_path='labels.pbtxt'",
            'train_config.fine_tune_checkpoint="ckpt/model.ckpt"',
            "model.ssd.anchor_generator.ssd_anchor_generator.min_scale=0.25",
        ],
    )
    assert raccoon.train_config.batch_size == 8
    assert (
        raccoon.eval_input_reader[0].HasField("shuffle")
        and not raccoon.eval_input_reader[0].shuffle
    )
    assert raccoon.train_config.sync_replicas is True
    assert raccoon.train_input_reader.mask_type == input_reader_pb2.PNG_MASKS
    assert raccoon.train_input_reader.label_map_path == "labels.pbtxt"
    assert raccoon.train_config.fine_tune_checkpoint == "ckpt/model.ckpt"
    assert raccoon.model.ssd.anchor_generator.ssd_anchor_generator.min_scale == pytest.approx(0.25)


def test_setting_a_oneof_member_switches_the_oneof(
    raccoon: pipeline_config.TrainEvalPipelineConfig,
) -> None:
    key = "train_config.optimizer.adam_optimizer.learning_rate.constant_learning_rate.learning_rate"
    pipeline_config.apply_overrides(raccoon, [f"{key}=0.01"])
    optimizer = raccoon.train_config.optimizer
    assert optimizer.WhichOneof("optimizer") == "adam_optimizer"
    assert (
        optimizer.adam_optimizer.learning_rate.constant_learning_rate.learning_rate
        == pytest.approx(0.01)
    )


def test_repeated_fields_lists_indices_append_and_wildcard(
    raccoon: pipeline_config.TrainEvalPipelineConfig,
) -> None:
    steps_before = len(raccoon.train_config.data_augmentation_options)
    pipeline_config.apply_overrides(
        raccoon,
        [
            'train_input_reader.tf_record_input_reader.input_path=[a.record, "b,c.record"]',
            f"train_config.data_augmentation_options[{steps_before}]=random_vertical_flip {{}}",
            "train_config.data_augmentation_options[0]={ random_adjust_hue { max_delta: 0.1 } }",
            "eval_input_reader[1].tf_record_input_reader.input_path=second.record",
            "eval_input_reader[*].num_epochs=2",
            "eval_config.metrics_set=[coco_detection_metrics, pascal_voc_detection_metrics]",
            "eval_config.super_categories[animals]=raccoon,cat",
        ],
    )
    assert list(raccoon.train_input_reader.tf_record_input_reader.input_path) == [
        "a.record",
        "b,c.record",
    ]
    steps = raccoon.train_config.data_augmentation_options
    assert len(steps) == steps_before + 1
    assert steps[-1].WhichOneof("preprocessing_step") == "random_vertical_flip"
    assert steps[0].WhichOneof("preprocessing_step") == "random_adjust_hue"
    assert [reader.num_epochs for reader in raccoon.eval_input_reader] == [2, 2]
    assert list(raccoon.eval_config.metrics_set) == [
        "coco_detection_metrics",
        "pascal_voc_detection_metrics",
    ]
    assert raccoon.eval_config.super_categories["animals"] == "raccoon,cat"


def test_message_value_replaces_the_whole_field(
    raccoon: pipeline_config.TrainEvalPipelineConfig,
) -> None:
    pipeline_config.apply_overrides(
        raccoon, ["model.ssd.box_coder={ faster_rcnn_box_coder { y_scale: 5 } }"]
    )
    coder = raccoon.model.ssd.box_coder.faster_rcnn_box_coder
    assert coder.y_scale == pytest.approx(5.0)
    assert not coder.HasField("x_scale")  # replaced, not merged


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (
            "train_config.batch_sise=3",
            'train_config.batch_sise: unknown field "batch_sise" in TrainConfig; did you mean "batch_size"?',
        ),
        ("train_config.zzz=3", "valid names: batch_size, data_augmentation_options"),
        ("batch_sise=3", 'unknown key "batch_sise"; did you mean "batch_size"?'),
        ("train_input_reader.mask_type=PNG_MASK", 'did you mean "PNG_MASKS"?'),
        ("train_config.batch_size=-1", "train_config.batch_size: -1 does not fit uint32"),
        ("train_config.batch_size=1.5", "train_config.batch_size: expected uint32, found '1.5'"),
        (
            "train_config.sync_replicas=maybe",
            "train_config.sync_replicas: expected bool, found 'maybe'",
        ),
        ("eval_input_reader.shuffle=false", "eval_input_reader is repeated; give an index"),
        (
            "eval_input_reader[5].shuffle=false",
            "eval_input_reader[5]: index out of range (it has 1 elements)",
        ),
        ("train_config.batch_size.x=1", "train_config.batch_size is a uint32, not a message"),
        ("train_config.batch_size", "expected KEY=VALUE"),
        (
            "model.ssd.box_coder={ faster_rcnn_box_codr {} }",
            "model.ssd.box_coder.faster_rcnn_box_codr: unknown field",
        ),
        ("decay_factor=0.5", None),
    ],
)
def test_override_errors_name_the_override_and_path(
    raccoon: pipeline_config.TrainEvalPipelineConfig, override: str, expected: str | None
) -> None:
    if expected is None:  # a control case: this one is valid for the raccoon config
        pipeline_config.apply_overrides(raccoon, [override])
        return
    with pytest.raises(ConfigError) as caught:
        pipeline_config.apply_overrides(raccoon, [override])
    assert f"override {override!r}" in str(caught.value)
    assert expected in str(caught.value)


def test_failed_overrides_leave_the_config_unchanged(
    raccoon: pipeline_config.TrainEvalPipelineConfig,
) -> None:
    before = pipeline_config.TrainEvalPipelineConfig()
    before.CopyFrom(raccoon)
    with pytest.raises(ConfigError):
        pipeline_config.apply_overrides(
            raccoon, ["train_config.batch_size=2", "train_config.nope=1"]
        )
    assert raccoon == before


def test_shortcut_keys(raccoon: pipeline_config.TrainEvalPipelineConfig) -> None:
    pipeline_config.apply_overrides(
        raccoon,
        [
            "train_steps=1000",
            "batch_size=4",
            "num_classes=7",
            "learning_rate=0.008",
            "label_map_path=labels.pbtxt",
            "train_input_path=t1.record,t2.record",
            "eval_input_path=e.record",
            "eval_num_epochs=1",
            "eval_with_moving_averages=true",
        ],
    )
    assert raccoon.train_config.num_steps == 1000
    assert raccoon.train_config.batch_size == 4
    assert raccoon.model.ssd.num_classes == 7
    schedule = raccoon.train_config.optimizer.rms_prop_optimizer.learning_rate
    assert schedule.exponential_decay_learning_rate.initial_learning_rate == pytest.approx(0.008)
    readers = [raccoon.train_input_reader, *raccoon.eval_input_reader]
    assert {reader.label_map_path for reader in readers} == {"labels.pbtxt"}
    assert list(raccoon.train_input_reader.tf_record_input_reader.input_path) == [
        "t1.record",
        "t2.record",
    ]
    assert list(raccoon.eval_input_reader[0].tf_record_input_reader.input_path) == ["e.record"]
    assert raccoon.eval_config.use_moving_averages


def test_learning_rate_shortcut_keeps_the_schedule_shape() -> None:
    manual = pipeline_config.load(MANUAL_CONFIG, overrides=["learning_rate=0.006"])
    schedule = (
        manual.train_config.optimizer.momentum_optimizer.learning_rate.manual_step_learning_rate
    )
    original = pipeline_config.load(MANUAL_CONFIG).train_config.optimizer.momentum_optimizer
    factor = 0.006 / original.learning_rate.manual_step_learning_rate.initial_learning_rate
    assert schedule.initial_learning_rate == pytest.approx(0.006)
    expected = [
        step.learning_rate * factor
        for step in original.learning_rate.manual_step_learning_rate.schedule
    ]
    assert [step.learning_rate for step in schedule.schedule] == pytest.approx(expected)

    cosine = pipeline_config.load(COSINE_CONFIG, overrides=["learning_rate=0.4"])
    rate = cosine.train_config.optimizer.momentum_optimizer.learning_rate.cosine_decay_learning_rate
    assert rate.learning_rate_base == pytest.approx(0.4)
    assert rate.warmup_learning_rate == pytest.approx(0.13333 * 0.4 / 0.8, rel=1e-3)


def test_shortcut_that_does_not_apply_is_an_error() -> None:
    cosine = pipeline_config.load(COSINE_CONFIG)
    with pytest.raises(ConfigError, match="has no decay_factor"):
        pipeline_config.apply_overrides(cosine, ["decay_factor=0.5"])
    empty = pipeline_config.TrainEvalPipelineConfig()
    with pytest.raises(ConfigError, match="eval_input_reader is empty"):
        pipeline_config.apply_overrides(empty, ["eval_input_path=x.record"])


def test_config_override_text_merges_like_the_od_api(
    raccoon: pipeline_config.TrainEvalPipelineConfig,
) -> None:
    steps_before = len(raccoon.train_config.data_augmentation_options)
    pipeline_config.merge_config_override(
        raccoon,
        "train_config { batch_size: 2 data_augmentation_options { random_vertical_flip {} } "
        "optimizer { adam_optimizer { learning_rate { constant_learning_rate { learning_rate: 0.1 } } } } }",
    )
    assert raccoon.train_config.batch_size == 2
    assert len(raccoon.train_config.data_augmentation_options) == steps_before + 1  # appended
    assert raccoon.train_config.optimizer.WhichOneof("optimizer") == "adam_optimizer"
    assert raccoon.model.ssd.num_classes == 1  # untouched


def test_config_override_errors_point_into_the_snippet(
    raccoon: pipeline_config.TrainEvalPipelineConfig,
) -> None:
    with pytest.raises(ConfigError) as caught:
        pipeline_config.merge_config_override(raccoon, "train_config {\n  batch_sise: 2 }")
    assert str(caught.value).startswith("<config_override>:2:3: train_config.batch_sise: ")


def test_load_applies_snippet_then_overrides() -> None:
    config = pipeline_config.load(
        RACCOON_CONFIG,
        overrides=["train_config.batch_size=16"],
        config_override_text="train_config { batch_size: 2 num_steps: 9 }",
    )
    assert config.train_config.batch_size == 16
    assert config.train_config.num_steps == 9
