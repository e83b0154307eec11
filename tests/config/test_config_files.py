"""Every OD API sample config loads, and saves/loads back equal as text, JSON and YAML."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import objdet.config as pipeline_config
from objdet.protos import train_pb2

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
RACCOON_CONFIG = SHARED_DATA / "raccoon" / "ssd_mobilenet_v1_pets.config"
ODAPI_CONFIGS = sorted((SHARED_DATA / "odapi" / "configs").glob("**/*.config"))
ALL_CONFIGS = [*ODAPI_CONFIGS, RACCOON_CONFIG]


def test_the_shared_configs_are_there() -> None:
    assert len(ODAPI_CONFIGS) == 106, f"expected 106 OD API configs under {SHARED_DATA}"
    assert RACCOON_CONFIG.is_file()


@pytest.mark.parametrize("path", ALL_CONFIGS, ids=lambda path: f"{path.parent.name}/{path.name}")
def test_config_loads_validates_and_round_trips(path: Path, tmp_path: Path) -> None:
    config = pipeline_config.load(path)
    assert config.model.WhichOneof("model") is not None
    assert config.ByteSize() > 100
    pipeline_config.validate(config, path)
    for suffix in (".config", ".json", ".yaml"):
        saved = pipeline_config.save(config, tmp_path / f"copy{suffix}")
        assert pipeline_config.load(saved) == config, f"{suffix} round trip changed the config"


def test_raccoon_values_are_read_as_written() -> None:
    config = pipeline_config.load(RACCOON_CONFIG)
    assert config.train_config.batch_size == 24
    assert config.model.ssd.num_classes == 1
    assert config.model.ssd.anchor_generator.ssd_anchor_generator.min_scale == pytest.approx(0.2)
    schedule = config.train_config.optimizer.rms_prop_optimizer.learning_rate
    assert schedule.exponential_decay_learning_rate.initial_learning_rate == pytest.approx(0.004)
    assert len(config.eval_input_reader) == 1
    assert pipeline_config.get_num_classes(config) == 1
    assert pipeline_config.get_architecture(config) == "ssd"


def test_tf2_fields_parse() -> None:
    keypoints = (
        SHARED_DATA / "odapi/configs/tf2/centernet_hourglass104_512x512_kpts_coco17_tpu-32.config"
    )
    config = pipeline_config.load(keypoints)
    assert config.train_config.fine_tune_checkpoint_version == train_pb2.V2
    metric = config.eval_config.parameterized_metric[0].coco_keypoint_metrics
    assert metric.class_label == "person"
    assert metric.keypoint_label_to_sigmas["nose"] == pytest.approx(0.026)
    assert len(config.eval_config.keypoint_edge) > 0


def test_json_with_camel_case_names_loads(tmp_path: Path) -> None:
    path = tmp_path / "pipeline.json"
    path.write_text(
        json.dumps({"trainConfig": {"batchSize": 3}, "evalInputReader": [{"shuffle": False}]})
    )
    config = pipeline_config.load(path)
    assert config.train_config.batch_size == 3
    assert config.eval_input_reader[0].HasField("shuffle")


def test_yaml_written_by_hand_loads(tmp_path: Path) -> None:
    path = tmp_path / "pipeline.yml"
    path.write_text(
        "train_config:\n  batch_size: 4\n  data_augmentation_options:\n"
        "    - random_horizontal_flip: {}\n    - random_jitter_boxes: {jitter_mode: SHRINK}\n"
    )
    config = pipeline_config.load(path)
    steps = config.train_config.data_augmentation_options
    assert config.train_config.batch_size == 4
    assert steps[0].WhichOneof("preprocessing_step") == "random_horizontal_flip"
    assert steps[1].random_jitter_boxes.jitter_mode == steps[1].random_jitter_boxes.SHRINK


def test_save_is_atomic_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    config = pipeline_config.load(RACCOON_CONFIG)
    target = tmp_path / "out" / "pipeline.config"
    pipeline_config.save(config, target)
    pipeline_config.save(config, target)  # overwrite in place
    assert sorted(path.name for path in target.parent.iterdir()) == ["pipeline.config"]
    assert "batch_size: 24" in target.read_text()


def test_duplicate_scalar_keeps_the_last_value_like_the_od_api() -> None:
    config = pipeline_config.parse_text("train_config { batch_size: 2 batch_size: 5 }")
    assert config.train_config.batch_size == 5


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(pipeline_config.ConfigError, match="not found"):
        pipeline_config.load(tmp_path / "absent.config")
