"""Export: directory contents, signature, atomicity, EMA weights and clear errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from tiny_detector import MAX_DETECTIONS, STEP, TinyTraining

from objdet import config as cfg
from objdet.engine.restore import model_weights_from_checkpoint
from objdet.errors import ConfigError, ObjdetError
from objdet.export.exporter import export_inference_graph
from objdet.inference.predictor import Predictor
from objdet.structures.label_map import load_label_map

EXPECTED_FILES = {
    "model.pt2", "model.onnx", "detector.pt2", "weights.pt", "pipeline.config", "label_map.pbtxt",
    "signature.json", "export.json",
}


def test_export_directory_is_complete(exported: Callable[[str], Path], tiny_training: TinyTraining) -> None:
    directory = exported("image_tensor")
    assert {path.name for path in directory.iterdir()} == EXPECTED_FILES
    assert [p.name for p in directory.parent.iterdir() if p.name.startswith(".")] == []
    metadata = json.loads((directory / "export.json").read_text())
    assert metadata["step"] == STEP and metadata["weights"] == "ema"
    assert metadata["input_type"] == "image_tensor" and metadata["canvas_size"] == [64, 64]
    assert metadata["formats"] == ["pt2", "onnx", "program"]
    written, own = cfg.read_config(directory / "pipeline.config"), cfg.read_config(tiny_training.config_path)
    for config in (written, own):  # the worker that exported it named its own temporary files
        config.train_input_reader.label_map_path = ""
        for reader in config.eval_input_reader:
            reader.label_map_path = ""
    assert written == own
    assert load_label_map(directory / "label_map.pbtxt").items == load_label_map(
        tiny_training.label_map_path).items
    weights = torch.load(directory / "weights.pt", weights_only=True)
    for name, value in tiny_training.reference.state_dict().items():
        assert torch.equal(weights[name], value), name  # the EMA weights, not the raw ones


def test_signature_describes_inputs_and_graph(
    exported: Callable[[str], Path], predictor_for: Callable[[str], Predictor]
) -> None:
    signature = json.loads((exported("image_tensor") / "signature.json").read_text())
    assert signature["inputs"] == {"input_tensor": {"dtype": "uint8", "shape": [1, -1, -1, 3]}}
    assert signature["outputs"]["detection_boxes"]["shape"] == [1, MAX_DETECTIONS, 4]
    assert set(signature["outputs"]) == {
        "detection_boxes", "detection_scores", "detection_classes", "num_detections"}
    raw = predictor_for("image_tensor").network(torch.rand(1, 3, 64, 64))  # model.pt2
    for name, spec in signature["graph"]["outputs"].items():
        assert list(raw[name].shape) == spec["shape"], name


def test_failing_export_leaves_no_partial_directory(
    tiny_training: TinyTraining, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail_while_writing(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    def small_program(*args: object) -> torch.export.ExportedProgram:
        # A real (tiny) program: the network's trace is not what this test is about.
        return torch.export.export(torch.nn.Linear(2, 2), (torch.zeros(1, 2),))

    monkeypatch.setattr("objdet.export.exporter.export_network", small_program)
    monkeypatch.setattr("objdet.export.exporter._write_json", fail_while_writing)
    previous = tmp_path / "exported"
    previous.mkdir()
    (previous / "model.pt2").write_bytes(b"previous export")
    with pytest.raises(OSError, match="disk full"):
        export_inference_graph(
            pipeline_config_path=tiny_training.config_path,
            trained_checkpoint_dir=tiny_training.checkpoint_dir,
            output_directory=tmp_path / "exported", formats=("pt2",),
        )
    # The previous export is intact and no staging directory is left behind.
    assert list(tmp_path.iterdir()) == [previous]
    assert [p.name for p in previous.iterdir()] == ["model.pt2"]
    assert (previous / "model.pt2").read_bytes() == b"previous export"


def test_missing_checkpoint_dir_is_a_clear_error(tiny_training: TinyTraining, tmp_path: Path) -> None:
    with pytest.raises(ObjdetError, match="checkpoint directory does not exist"):
        export_inference_graph(
            pipeline_config_path=tiny_training.config_path,
            trained_checkpoint_dir=tmp_path / "nowhere", output_directory=tmp_path / "out",
        )
    (tmp_path / "empty").mkdir()
    with pytest.raises(ObjdetError, match="no checkpoint found"):
        export_inference_graph(
            pipeline_config_path=tiny_training.config_path,
            trained_checkpoint_dir=tmp_path / "empty", output_directory=tmp_path / "out",
        )
    assert not (tmp_path / "out").exists()


def test_wrong_input_type_lists_the_valid_ones(tiny_training: TinyTraining, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'jpeg' is not supported; expected one of image_tensor"):
        export_inference_graph(
            pipeline_config_path=tiny_training.config_path,
            trained_checkpoint_dir=tiny_training.checkpoint_dir,
            output_directory=tmp_path / "out", input_type="jpeg",
        )


def test_checkpoint_of_another_model_is_a_clear_error(tiny_training: TinyTraining, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="do not fit the model"):
        export_inference_graph(
            pipeline_config_path=tiny_training.config_path,
            trained_checkpoint_dir=tiny_training.checkpoint_dir,
            output_directory=tmp_path / "out", overrides=["model.ssd.num_classes=5"],
        )


def test_variable_canvas_cannot_be_exported(tiny_training: TinyTraining, tmp_path: Path) -> None:
    snippet = ("model { ssd { image_resizer { keep_aspect_ratio_resizer { min_dimension: 32 "
               "max_dimension: 64 } } } }")
    with pytest.raises(ConfigError, match="pad_to_max_dimension"):
        export_inference_graph(
            pipeline_config_path=tiny_training.config_path,
            trained_checkpoint_dir=tiny_training.checkpoint_dir,
            output_directory=tmp_path / "out", config_override_text=snippet,
        )


def test_model_weights_from_checkpoint_strips_the_averaged_model() -> None:
    raw = {"layer.weight": torch.zeros(2)}
    ema = {"module.layer.weight": torch.ones(2), "n_averaged": torch.tensor(3)}
    state = {"model": raw, "ema": ema, "step": 1}
    assert torch.equal(model_weights_from_checkpoint(state, True)["layer.weight"], torch.ones(2))
    assert set(model_weights_from_checkpoint(state, True)) == {"layer.weight"}
    assert torch.equal(model_weights_from_checkpoint(state, False)["layer.weight"], torch.zeros(2))
    no_ema = {"model": raw, "ema": None}
    assert torch.equal(model_weights_from_checkpoint(no_ema, True)["layer.weight"], torch.zeros(2))
