"""Bad configs fail with one ConfigError naming file:line:col, the field path and a hint."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import objdet.config as pipeline_config
from objdet.errors import ConfigError

GOOD_TEXT = """\
model {
  ssd {
    num_classes: 3
    box_coder {
      faster_rcnn_box_coder { y_scale: 10.0 }
    }
  }
}
train_config {
  batch_size: 8
  data_augmentation_options { random_horizontal_flip {} }
  data_augmentation_options { random_crop_image { min_area: 0.2 } }
}
train_input_reader {
  mask_type: PNG_MASKS
  tf_record_input_reader { input_path: "train.record" }
}
eval_input_reader { shuffle: false tf_record_input_reader { input_path: "a" } }
eval_input_reader { shuffle: false tf_record_input_reader { input_path: "b" } }
"""


def _error_for(text: str, tmp_path: Path, name: str = "pipeline.config") -> str:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        pipeline_config.load(path)
    return str(caught.value)


def test_the_good_text_loads(tmp_path: Path) -> None:
    path = tmp_path / "pipeline.config"
    path.write_text(GOOD_TEXT)
    config = pipeline_config.load(path)
    assert config.train_config.data_augmentation_options[
        1
    ].random_crop_image.min_area == pytest.approx(0.2)


def test_misspelt_field_names_position_path_and_suggestion(tmp_path: Path) -> None:
    message = _error_for(GOOD_TEXT.replace("batch_size: 8", "batch_sise: 8"), tmp_path)
    path = tmp_path / "pipeline.config"
    assert message.startswith(f"{path}:10:3: train_config.batch_sise: ")
    assert 'unknown field "batch_sise" in TrainConfig' in message
    assert 'did you mean "batch_size"?' in message


def test_misspelt_nested_message_field(tmp_path: Path) -> None:
    message = _error_for(
        GOOD_TEXT.replace("faster_rcnn_box_coder {", "faster_rcnn_box_codr {"), tmp_path
    )
    assert ":5:7: model.ssd.box_coder.faster_rcnn_box_codr: " in message
    assert 'did you mean "faster_rcnn_box_coder"?' in message


def test_error_inside_second_repeated_element_names_its_index(tmp_path: Path) -> None:
    text = GOOD_TEXT.replace('input_path: "b"', 'input_pth: "b"')
    message = _error_for(text, tmp_path)
    assert "eval_input_reader[1].tf_record_input_reader.input_pth" in message
    assert 'did you mean "input_path"?' in message


def test_bad_enum_value_suggests_the_closest_name(tmp_path: Path) -> None:
    message = _error_for(GOOD_TEXT.replace("PNG_MASKS", "PNG_MASK"), tmp_path)
    assert ":15:14: train_input_reader.mask_type: " in message
    assert (
        'unknown value "PNG_MASK" for enum InstanceMaskType; did you mean "PNG_MASKS"?' in message
    )


def test_wrong_type_names_expected_type_and_found_value(tmp_path: Path) -> None:
    message = _error_for(GOOD_TEXT.replace("min_area: 0.2", "min_area: big"), tmp_path)
    assert (
        ":12:61: train_config.data_augmentation_options[1].random_crop_image.min_area: " in message
    )
    assert "expected float, found 'big'" in message


def test_negative_value_for_unsigned_field(tmp_path: Path) -> None:
    message = _error_for(GOOD_TEXT.replace("batch_size: 8", "batch_size: -8"), tmp_path)
    assert "train_config.batch_size: expected uint32, found '-8'" in message


def test_unknown_top_level_field_lists_the_valid_names(tmp_path: Path) -> None:
    message = _error_for("qqq { }\n", tmp_path)
    assert ":1:1: qqq: " in message
    assert "valid names: model, train_config, train_input_reader" in message


def test_unclosed_brace_names_the_file_and_position(tmp_path: Path) -> None:
    message = _error_for("train_config {\n  batch_size: 3\n", tmp_path)
    assert message.startswith(f"{tmp_path / 'pipeline.config'}:2:")
    assert "train_config" in message


def test_json_unknown_field_and_bad_enum(tmp_path: Path) -> None:
    data = {"train_config": {"batch_sise": 2}}
    message = _error_for(json.dumps(data), tmp_path, "pipeline.json")
    assert message.startswith(f"{tmp_path / 'pipeline.json'}: train_config.batch_sise: ")
    assert 'did you mean "batch_size"?' in message
    data = {"eval_input_reader": [{}, {"mask_type": "PNG_MASK"}]}
    message = _error_for(json.dumps(data), tmp_path, "pipeline.json")
    assert "eval_input_reader[1].mask_type: " in message
    assert 'did you mean "PNG_MASKS"?' in message


def test_json_wrong_type_and_syntax_error(tmp_path: Path) -> None:
    message = _error_for('{"train_config": {"batch_size": "eight"}}', tmp_path, "pipeline.json")
    assert "train_config.batch_size: expected uint32, found 'eight'" in message
    message = _error_for('{"train_config": {\n  "batch_size": 2,\n}}', tmp_path, "pipeline.json")
    assert message.startswith(f"{tmp_path / 'pipeline.json'}:3:1: invalid JSON")


def test_yaml_errors_name_the_path_and_position(tmp_path: Path) -> None:
    message = _error_for("train_config:\n  sync_replicas: maybe\n", tmp_path, "pipeline.yaml")
    assert "train_config.sync_replicas: expected bool, found 'maybe'" in message
    message = _error_for("train_config:\n  data_augmentation_options: {}\n", tmp_path, "p.yaml")
    assert "train_config.data_augmentation_options: expected a list" in message
    message = _error_for("train_config: [\n", tmp_path, "pipeline.yaml")
    assert "invalid YAML" in message and f"{tmp_path / 'pipeline.yaml'}:2:" in message


def test_validate_reports_every_semantic_problem(tmp_path: Path) -> None:
    text = """
    train_config {
      batch_size: 0
      optimizer { momentum_optimizer { learning_rate { manual_step_learning_rate {
        schedule { step: 100 learning_rate: 0.1 } schedule { step: 50 learning_rate: 0.01 }
      } } } }
    }
    train_input_reader { label_map_path: "x" }
    eval_input_reader { tf_record_input_reader { } }
    """
    config = pipeline_config.parse_text(text)
    with pytest.raises(ConfigError) as caught:
        pipeline_config.validate(config, "p.config")
    message = str(caught.value)
    assert message.startswith("p.config: invalid config: ")
    for expected in (
        "model: no meta-architecture set",
        "train_config.batch_size: must be > 0",
        "manual_step_learning_rate.schedule: steps must strictly increase, found [100, 50]",
        "train_input_reader: no input source",
        "eval_input_reader[0].tf_record_input_reader.input_path: empty",
    ):
        assert expected in message


def test_importing_objdet_config_does_not_import_torch() -> None:
    code = "import sys, objdet.config; print('torch' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"
