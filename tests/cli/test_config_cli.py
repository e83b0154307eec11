"""``objdet config validate`` and ``objdet config show``, run as a user would."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from objdet.cli.main import main

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
RACCOON_CONFIG = SHARED_DATA / "raccoon" / "ssd_mobilenet_v1_pets.config"
ODAPI_CONFIGS = sorted((SHARED_DATA / "odapi" / "configs").glob("**/*.config"))
ODAPI_LABEL_MAPS = SHARED_DATA / "odapi" / "label_maps"
RACCOON_LABEL_MAP = Path(__file__).resolve().parents[2] / "datasets/raccoon/object-detection.pbtxt"
# The OD API's sample configs whose num_classes is above their label map's largest id
# (545): valid, with a warning naming the ids the label map does not name.
NUM_CLASSES_ABOVE_LARGEST_ID = {
    "faster_rcnn_inception_resnet_v2_atrous_oid.config": (
        "model.faster_rcnn.num_classes is 546", "predicts ids 546, "),
    "ssd_resnet101_v1_fpn_shared_box_predictor_oid_512x512_sync.config": (
        "model.ssd.num_classes is 601", "predicts ids 546..601, "),
}


def with_real_label_maps(config: Path, folder: Path) -> Path:
    """A copy of a shared config whose label_map_path placeholders name real label maps."""
    text = config.read_text()
    for placeholder, name in (
        ("PATH_TO_BE_CONFIGURED/label_map.txt", "mscoco_label_map.pbtxt"),  # the TF2 zoo's
        ("PATH_TO_BE_CONFIGURED/ss_label_map.pbtxt", "snapshot_serengeti_label_map.pbtxt"),
    ):
        text = text.replace(placeholder, f"{ODAPI_LABEL_MAPS}/{name}")
    text = text.replace("PATH_TO_BE_CONFIGURED/", f"{ODAPI_LABEL_MAPS}/")
    text = text.replace(
        "gs://${YOUR_GCS_BUCKET}/data/object-detection.pbtxt", str(RACCOON_LABEL_MAP)
    )
    copy = folder / config.parent.name / config.name
    copy.parent.mkdir(parents=True, exist_ok=True)
    copy.write_text(text)
    return copy


def _objdet(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "objdet", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_show_prints_the_values_as_written() -> None:
    result = _objdet("config", "show", str(RACCOON_CONFIG))
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["train_config"]["batch_size"] == 24
    assert shown["model"]["ssd"]["anchor_generator"]["ssd_anchor_generator"]["min_scale"] == 0.2
    schedule = shown["train_config"]["optimizer"]["rms_prop_optimizer"]["learning_rate"]
    assert schedule["exponential_decay_learning_rate"]["initial_learning_rate"] == 0.004
    assert shown["eval_input_reader"][0]["tf_record_input_reader"]["input_path"] == [
        "gs://${YOUR_GCS_BUCKET}/data/test.record"
    ]


def test_show_applies_config_override_then_overrides(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "config", "show", str(RACCOON_CONFIG),
            "--config_override", "train_config { num_steps: 5 batch_size: 3 }",
            "--override", "batch_size=8",
            "--override", "eval_input_reader[0].shuffle=true",
        ]
    )  # fmt: skip
    assert code == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["train_config"]["num_steps"] == 5
    assert shown["train_config"]["batch_size"] == 8
    assert shown["eval_input_reader"][0]["shuffle"] is True


def test_show_reports_a_bad_override_as_one_clean_line() -> None:
    result = _objdet(
        "config", "show", str(RACCOON_CONFIG), "--override", "train_config.batch_sise=2"
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert 'did you mean "batch_size"?' in result.stderr
    assert result.stdout == ""


def test_validate_all_shared_configs_one_line_each(tmp_path: Path) -> None:
    """Every OD API sample config validates against the label map it names; the two whose
    num_classes is above the label map's largest id with a warning on stderr."""
    copies = [with_real_label_maps(path, tmp_path) for path in [*ODAPI_CONFIGS, RACCOON_CONFIG]]
    result = _objdet("config", "validate", *map(str, copies))
    assert result.returncode == 0, result.stdout
    assert result.stdout.splitlines() == [f"OK {path}" for path in copies]
    warnings = result.stderr.splitlines()
    assert len(warnings) == len(NUM_CLASSES_ABOVE_LARGEST_ID), result.stderr
    for path in copies:
        expected = NUM_CLASSES_ABOVE_LARGEST_ID.get(path.name)
        if expected is None:
            continue
        [line] = [line for line in warnings if line.startswith(f"WARNING {path}: ")]
        num_classes, ids = expected
        assert f"{num_classes} but the largest id in " in line and ids in line
        assert "oid_bbox_trainable_label_map.pbtxt" in line and "is 545" in line
        assert "their detections are not evaluated" in line


def test_validate_reads_the_label_maps(tmp_path: Path) -> None:
    config = with_real_label_maps(RACCOON_CONFIG, tmp_path)
    broken = tmp_path / "broken.pbtxt"
    broken.write_text("item {\n  id: 1\n  nam: 'raccoon'\n}\n")
    nameless = tmp_path / "nameless.pbtxt"
    nameless.write_text("item {\n  id: 1\n  display_name: 'Raccoon'\n}\n")
    two = tmp_path / "two.pbtxt"
    two.write_text("item { id: 1 name: 'raccoon' } item { id: 2 name: 'fox' }")
    cases = {}
    for label_map in (broken, nameless, two, tmp_path / "missing.pbtxt"):
        case = tmp_path / f"{label_map.stem}.config"
        case.write_text(config.read_text().replace(str(RACCOON_LABEL_MAP), str(label_map)))
        cases[label_map.stem] = case
    zero = tmp_path / "zero.config"
    zero.write_text(config.read_text().replace("num_classes: 1", "num_classes: 0"))
    above = tmp_path / "above.config"
    above.write_text(config.read_text().replace("num_classes: 1", "num_classes: 3"))
    result = _objdet("config", "validate", *map(str, [config, *cases.values(), zero, above]))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"OK {config}"
    fields = "train_input_reader.label_map_path, eval_input_reader[0].label_map_path"
    assert lines[1] == (
        f"FAIL {cases['broken']}: invalid config: {fields}: {broken}:3:3: label map syntax "
        'error: Message type "objdet.protos.StringIntLabelMapItem" has no field named "nam".'
    )
    assert lines[2].startswith(f"FAIL {cases['nameless']}: invalid config: {fields}: {nameless}: ")
    assert "item 1 (id 1, display_name 'Raccoon') has no name" in lines[2]
    assert lines[3].startswith(f"FAIL {cases['two']}: invalid config: model.ssd.num_classes is 1 ")
    assert f"the largest id in {two} ({fields}) is 2 (2 items): boxes of ids 2 could " in lines[3]
    assert lines[4] == (
        f"FAIL {cases['missing']}: invalid config: {fields}: {tmp_path / 'missing.pbtxt'}: "
        "label map file not found"
    )
    assert lines[5].startswith(f"FAIL {zero}: invalid config: model.ssd.num_classes: must be > 0")
    # num_classes above the largest id: valid (the OD API accepts it), with a warning.
    assert lines[6] == f"OK {above}"
    warning = (
        f"WARNING {above}: model.ssd.num_classes is 3 but the largest id in {RACCOON_LABEL_MAP} "
        f"({fields}) is 1: the model also predicts ids 2..3, which the label map does not "
        "name; their detections are not evaluated (as in the OD API)"
    )
    assert result.stderr.splitlines() == [warning]


def test_validate_fails_for_a_bad_file_and_names_it(tmp_path: Path) -> None:
    bad = tmp_path / "bad.config"
    bad.write_text("train_config {\n  batch_sise: 8\n}\n")
    no_model = tmp_path / "no_model.config"
    no_model.write_text("train_config { batch_size: 8 }\n")
    raccoon = with_real_label_maps(RACCOON_CONFIG, tmp_path)
    result = _objdet("config", "validate", str(raccoon), str(bad), str(no_model))
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0] == f"OK {raccoon}"
    assert lines[1].startswith(f"FAIL {bad}: ")
    assert (
        ":2:3: train_config.batch_sise: " in lines[1] and 'did you mean "batch_size"?' in lines[1]
    )
    assert lines[2].startswith(f"FAIL {no_model}: ")
    assert "model: no meta-architecture set" in lines[2]
