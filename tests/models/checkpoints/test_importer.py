"""OD API TF2 checkpoints into objdet models: what each fine_tune_checkpoint_type restores and
what it leaves fresh (by name), the errors naming variables, and the import-checkpoint CLI
whose output `objdet export`/`detect` take like objdet's own checkpoints."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import objdet.config
from objdet.cli.main import main
from objdet.engine.fine_tune import load_fine_tune_checkpoint
from objdet.errors import CheckpointError
from objdet.models import build_model
from objdet.models.checkpoints.importer import is_tf2_checkpoint, load_tf2_checkpoint
from objdet.models.checkpoints.parity import (
    detections_to_reference_form,
    matched_share,
    reference_detections,
)
from objdet.models.checkpoints.tf_bundle import TFCheckpoint
from objdet.models.checkpoints.variable_map import to_torch_layout

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "odapi_parity"
MOBILENET = FIXTURES / "ssd_mobilenet_v2"
CHECKPOINT = MOBILENET / "checkpoint" / "ckpt-0"


def _model(directory: Path = MOBILENET, overrides: tuple[str, ...] = ()) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(objdet.config.load(directory / "pipeline.config", overrides).model)


def _initial_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.clone() for name, value in model.state_dict().items()}


def _changed(model: torch.nn.Module, before: dict[str, torch.Tensor]) -> set[str]:
    return {name for name, value in model.state_dict().items()
            if not torch.equal(value, before[name])}


def test_full_import_loads_every_tensor_with_its_value() -> None:
    model = _model()
    report = load_tf2_checkpoint(model, CHECKPOINT, "full")
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable <= set(report.loaded)
    assert "save_counter/.ATTRIBUTES/VARIABLE_VALUE" in report.not_restored
    reader = TFCheckpoint.open(CHECKPOINT)
    state = model.state_dict()
    for key, target in model.tf2_variable_map().items():
        expected = to_torch_layout(reader.read(key), target.layout)
        np.testing.assert_array_equal(state[target.name].numpy(), expected, err_msg=key)


def test_detection_type_restores_the_feature_extractor_only() -> None:
    model = _model()
    before = _initial_state(model)
    report = load_fine_tune_checkpoint(model, CHECKPOINT, "detection")
    changed = _changed(model, before)
    assert changed and all(name.startswith("feature_extractor.") for name in changed)
    predictor = {name for name in before if name.startswith("box_predictor.")}
    assert predictor and predictor <= set(report.missing)  # freshly initialized, by name
    assert not predictor & changed


def test_load_all_detection_checkpoint_vars_restores_what_matches_box_predictor_included() -> None:
    """TF1's load_all_detection_checkpoint_vars: every variable found with its shape; here the
    class head is for 3 classes, not the checkpoint's 2, so it alone stays fresh."""
    model = _model(overrides=("model.ssd.num_classes=3",))
    before = _initial_state(model)
    report = load_fine_tune_checkpoint(model, CHECKPOINT, "detection",
                                       load_all_detection_checkpoint_vars=True)
    changed = _changed(model, before)
    assert any(name.startswith("box_predictor.") for name in changed)  # box codes restored
    fresh = set(report.missing)
    assert fresh and all("class" in name for name in fresh if name.startswith("box_predictor."))
    assert not fresh & changed
    assert not any(name.startswith("feature_extractor.") for name in fresh)
    reader = TFCheckpoint.open(CHECKPOINT)
    state = model.state_dict()
    for key, target in model.tf2_variable_map().items():
        if target.name in changed:
            expected = to_torch_layout(reader.read(key), target.layout)
            np.testing.assert_array_equal(state[target.name].numpy(), expected, err_msg=key)


@pytest.mark.parametrize("load_all", [False, True])
def test_the_trainer_passes_load_all_detection_checkpoint_vars(tmp_path: Path, load_all: bool) -> None:
    from objdet.engine.checkpoint import CheckpointManager
    from objdet.engine.train_config import FineTune
    from objdet.engine.training import _resume_or_fine_tune

    model = _model()
    before = _initial_state(model)
    fine_tune = FineTune(str(CHECKPOINT), "detection", load_all_detection_checkpoint_vars=load_all)
    assert _resume_or_fine_tune(model, CheckpointManager(tmp_path), fine_tune) is None
    changed = _changed(model, before)
    assert any(name.startswith("feature_extractor.") for name in changed)
    assert any(name.startswith("box_predictor.") for name in changed) == load_all


def test_classification_type_restores_the_backbone_from_a_classification_checkpoint() -> None:
    model = _model()
    before = _initial_state(model)
    classification = MOBILENET / "classification"
    assert is_tf2_checkpoint(classification)  # a directory with a `checkpoint` state file
    report = load_fine_tune_checkpoint(model, classification, "classification")
    changed = _changed(model, before)
    backbone_names = {target.name for target in model.tf2_classification_map().values()}
    assert changed and changed <= backbone_names and report.loaded == len(backbone_names)
    fresh = set(report.missing)
    assert any(name.startswith("box_predictor.") for name in fresh)
    assert any(name.startswith("feature_extractor.") for name in fresh)  # the extra layers


def test_shape_mismatches_are_named() -> None:
    model = _model(overrides=("model.ssd.num_classes=3",))
    with pytest.raises(CheckpointError) as error:
        load_tf2_checkpoint(model, CHECKPOINT, "full")
    message = str(error.value)
    assert "\n" not in message and "shape mismatches" in message
    assert "class_predictions_with_background/0/_class_predictor_layers/0/kernel" in message
    assert "box_predictor." in message


def test_unmatched_and_unused_variables_are_named() -> None:
    model = _model(FIXTURES / "ssd_mobilenet_v2_fpnlite")
    with pytest.raises(CheckpointError, match=r"missing from the checkpoint: model/_box_predictor/"
                                              r"_base_tower_layers.*unused\): "
                                              r"model/_box_predictor/_prediction_heads"):
        load_tf2_checkpoint(model, CHECKPOINT, "full")


def test_missing_checkpoint_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="ckpt-7") as error:
        load_tf2_checkpoint(_model(), tmp_path / "ckpt-7", "full")
    assert "\n" not in str(error.value)


def _objdet(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "objdet", *args], capture_output=True,
                          text=True, check=False)


def test_import_checkpoint_cli_then_export_and_detect(tmp_path: Path) -> None:
    from objdet.inference.predictor import Predictor

    imported = tmp_path / "imported"
    label_map = tmp_path / "label_map.pbtxt"
    label_map.write_text("item { id: 1 name: 'raccoon' }\nitem { id: 2 name: 'fox' }\n")
    done = _objdet("import-checkpoint", "--pipeline_config_path", str(MOBILENET / "pipeline.config"),
                   "--checkpoint", str(CHECKPOINT), "--output_dir", str(imported),
                   "--override", f"eval_input_reader[0].label_map_path='{label_map}'")
    assert done.returncode == 0, done.stderr
    assert (imported / "ckpt-0.pt").is_file() and (imported / "pipeline.config").is_file()
    exported = tmp_path / "exported"
    # import-checkpoint above ran as a real subprocess; export through the CLI's entry point
    # in this process (an interpreter start costs ~5-10 s of the suite).
    assert main(["export", "--pipeline_config_path", str(imported / "pipeline.config"),
                 "--trained_checkpoint_dir", str(imported), "--output_directory", str(exported),
                 "--formats", "pt2"]) == 0
    data = np.load(MOBILENET / "reference.npz")
    image = data["image_0"]  # uint8 [H, W, 3], what the OD API model was fed
    found = Predictor.from_export(exported).detect(image)
    detections = {"boxes": torch.as_tensor(found.boxes), "scores": torch.as_tensor(found.scores),
                  "labels": torch.as_tensor(found.labels)}
    reference = reference_detections(data, 0)
    got = detections_to_reference_form(detections, image.shape[:2])
    assert matched_share(reference, got) >= 0.95


def test_import_checkpoint_cli_reports_a_bad_checkpoint_in_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["import-checkpoint", "--pipeline_config_path", str(MOBILENET / "pipeline.config"),
                 "--checkpoint", str(tmp_path / "nothing" / "ckpt-0"), "--output_dir",
                 str(tmp_path / "out")])
    stderr = capsys.readouterr().err
    assert code == 2
    assert stderr.count("\n") == 1 and "nothing" in stderr and "Traceback" not in stderr
    assert not (tmp_path / "out").exists()
