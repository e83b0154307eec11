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


def test_validate_all_shared_configs_one_line_each(capsys: pytest.CaptureFixture[str]) -> None:
    paths = [str(path) for path in [*ODAPI_CONFIGS, RACCOON_CONFIG]]
    assert main(["config", "validate", *paths]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"OK {path}" for path in paths]


def test_validate_fails_for_a_bad_file_and_names_it(tmp_path: Path) -> None:
    bad = tmp_path / "bad.config"
    bad.write_text("train_config {\n  batch_sise: 8\n}\n")
    no_model = tmp_path / "no_model.config"
    no_model.write_text("train_config { batch_size: 8 }\n")
    result = _objdet("config", "validate", str(RACCOON_CONFIG), str(bad), str(no_model))
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0] == f"OK {RACCOON_CONFIG}"
    assert lines[1].startswith(f"FAIL {bad}: ")
    assert (
        ":2:3: train_config.batch_sise: " in lines[1] and 'did you mean "batch_size"?' in lines[1]
    )
    assert lines[2].startswith(f"FAIL {no_model}: ")
    assert "model: no meta-architecture set" in lines[2]
