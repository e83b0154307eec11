"""``objdet train`` / ``objdet eval`` end to end on the tiny SSD and the raccoon record."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import objdet.config
from objdet.cli.main import main
from objdet.engine.checkpoint import CheckpointManager
from objdet.engine.training import TrainOptions, train
from objdet.errors import ConfigError

SHARED_RACCOON = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "raccoon"
REPO_RACCOON = Path(__file__).resolve().parents[2] / "datasets" / "raccoon"


def quiet(**overrides: object) -> TrainOptions:
    return TrainOptions(num_workers=0, show_progress=False, **overrides)  # type: ignore[arg-type]


def test_train_evaluates_and_keeps_checkpoints(tiny_config_path: Path, tmp_path: Path) -> None:
    result = train(tiny_config_path, tmp_path / "model",
                   quiet(num_train_steps=4, checkpoint_every_n=2, eval_every_n=2, log_every_n=1))
    assert result.step == 4
    assert [step for step, _ in result.eval_history] == [2, 4]
    metrics = result.eval_history[-1][1]
    assert 0.0 <= metrics["PascalBoxes_Precision/mAP@0.5IOU"] <= 1.0
    assert "DetectionBoxes_Recall/AR@100" in metrics
    for step, name in ((2, "metrics-2.json"), (4, "metrics-4.json"), (4, "metrics.json")):
        written = json.loads((tmp_path / "model" / "eval" / name).read_text())  # as `objdet eval`'s
        assert written == {"step": step, "metrics": dict(result.eval_history[step // 2 - 1][1])}
    index = CheckpointManager(tmp_path / "model").read_index()
    assert index.checkpoints == ["ckpt-2.pt", "ckpt-4.pt"]
    assert index.best_metric == "PascalBoxes_Precision/mAP@0.5IOU"
    assert objdet.config.load(tmp_path / "model" / "pipeline.config").train_config.batch_size == 4
    train_events = EventAccumulator(str(tmp_path / "model" / "train"))
    train_events.Reload()
    assert {"Loss/total_loss", "Loss/classification_loss", "learning_rate"} <= set(train_events.Tags()["scalars"])
    assert len(train_events.Scalars("Loss/total_loss")) == 4
    eval_events = EventAccumulator(str(tmp_path / "model" / "eval"))
    eval_events.Reload()
    assert "eval/PascalBoxes_Precision/mAP@0.5IOU" in eval_events.Tags()["scalars"]
    assert "eval_side_by_side_0" in eval_events.Tags()["images"]  # drawn detections


def _indexed_at_least(model_dir: Path, step: int) -> bool:
    """Whether ``model_dir``'s checkpoint index names a checkpoint of ``step`` or later."""
    if not (model_dir / "checkpoint.json").exists():
        return False
    latest = CheckpointManager(model_dir).latest_path()
    return latest is not None and int(latest.stem.split("-")[1]) >= step


def test_resume_after_kill_continues_with_identical_state(tiny_config_path: Path, tmp_path: Path) -> None:
    straight = train(tiny_config_path, tmp_path / "straight", quiet(num_train_steps=6, checkpoint_every_n=2))
    assert straight.step == 6

    command = [sys.executable, "-m", "objdet", "train", "--pipeline_config_path", str(tiny_config_path),
               "--model_dir", str(tmp_path / "killed"), "--num_train_steps", "60",
               "--checkpoint_every_n", "2", "--num_workers", "0", "--no_progress"]
    # One intra-op thread, as in this process (conftest): float sums depend on the split.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + 240
        # the index names a checkpoint only after its file is complete: wait for the index
        while not _indexed_at_least(tmp_path / "killed", 4):
            assert process.poll() is None, "training exited before its 2nd checkpoint"
            assert time.monotonic() < deadline, "no checkpoint within 240 s"
            time.sleep(0.2)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    latest = CheckpointManager(tmp_path / "killed").latest_path()
    assert latest is not None
    killed_at = int(CheckpointManager.load(latest)["step"])
    assert killed_at >= 4 and killed_at % 2 == 0

    straight_to_kill = train(tiny_config_path, tmp_path / "reference", quiet(num_train_steps=killed_at + 2, checkpoint_every_n=2))
    resumed = train(tiny_config_path, tmp_path / "killed", quiet(num_train_steps=killed_at + 2, checkpoint_every_n=2))
    assert resumed.step == straight_to_kill.step == killed_at + 2
    expected = CheckpointManager.load(tmp_path / "reference" / f"ckpt-{killed_at + 2}.pt")
    actual = CheckpointManager.load(tmp_path / "killed" / f"ckpt-{killed_at + 2}.pt")
    for section in ("model", "ema"):
        for name, tensor in expected[section].items():
            assert torch.equal(tensor, actual[section][name]), f"{section}.{name} differs after resume"
    assert expected["samples_seen"] == actual["samples_seen"]
    assert expected["optimizer"]["state"][0]["exp_avg"].equal(actual["optimizer"]["state"][0]["exp_avg"])


def test_objdet_eval_cli_run_once(tiny_config_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    train(tiny_config_path, tmp_path / "model", quiet(num_train_steps=1))
    code = main(["eval", "--pipeline_config_path", str(tiny_config_path), "--checkpoint_dir",
                 str(tmp_path / "model"), "--run_once"])
    assert code == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["step"] == 1
    saved = json.loads((tmp_path / "model" / "eval" / "metrics.json").read_text())
    assert saved == printed


def test_eval_without_checkpoint_is_a_clear_error(tiny_config_path: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    code = main(["eval", "--pipeline_config_path", str(tiny_config_path), "--checkpoint_dir",
                 str(tmp_path / "empty"), "--run_once"])
    assert code == 2
    assert "no checkpoint found" in capsys.readouterr().err


def test_the_raccoon_config_from_the_od_api_trains(tmp_path: Path) -> None:
    """The shared ssd_mobilenet_v1_pets.config, unchanged but for its gs:// paths."""
    record = str(REPO_RACCOON / "tfrecord" / "test.record")
    label_map = str(REPO_RACCOON / "object-detection.pbtxt")
    config = objdet.config.load(
        SHARED_RACCOON / "ssd_mobilenet_v1_pets.config",
        overrides=[
            f"train_input_reader.tf_record_input_reader.input_path=['{record}']",
            f"train_input_reader.label_map_path='{label_map}'",
            f"eval_input_reader[0].tf_record_input_reader.input_path=['{record}']",
            f"eval_input_reader[0].label_map_path='{label_map}'",
            "train_config.fine_tune_checkpoint=''",
            "train_config.batch_size=2",
            "eval_config.num_examples=2",
        ],
    )
    result = train(config, tmp_path / "model", quiet(num_train_steps=1))
    assert result.step == 1
    assert "DetectionBoxes_Precision/mAP" in result.eval_history[-1][1]  # the OD API's default metrics


def test_slow_batch_norm_decay_from_scratch_is_warned(caplog: pytest.LogCaptureFixture) -> None:
    from ssd_configs import parse_model, ssd_config_text

    from objdet.engine.training import warn_slow_batch_norm
    from objdet.models import build_model

    text = ssd_config_text(extractor="ssd_mobilenet_v1")
    model = build_model(parse_model(text))  # the base keeps slim's slow batch norm decay
    with caplog.at_level("WARNING", logger="objdet.engine.training"):
        slow = warn_slow_batch_norm(model, num_steps=360)
    assert slow and all(name.startswith("feature_extractor.base.") for name in slow)
    assert "override_base_feature_extractor_hyperparams" in caplog.text
    # Long enough to forget the initial statistics: no warning.
    assert warn_slow_batch_norm(model, num_steps=10_000) == []
    overridden = build_model(parse_model(text.replace(
        "use_depthwise: true", "use_depthwise: true override_base_feature_extractor_hyperparams: true", 1)))
    assert warn_slow_batch_norm(overridden, num_steps=360) == []
    # torchvision's MobileNets use its SSDlite's momentum 0.03: nothing to warn about.
    v3 = build_model(parse_model(ssd_config_text(extractor="ssd_mobilenet_v3_small")))
    assert warn_slow_batch_norm(v3, num_steps=360) == []


def test_the_main_job_config_has_no_batch_norm_too_slow_for_its_steps() -> None:
    """Every batch norm of the shipped model forgets its initial statistics within its run
    (part 1 of the recipe search evaluated a collapsed model for want of this)."""
    from objdet.engine.training import warn_slow_batch_norm
    from objdet.models import build_model

    config = objdet.config.load(
        Path(__file__).resolve().parents[2] / "configs" / "ssdlite_mobilenet_v3_large_raccoon.config"
    )
    assert warn_slow_batch_norm(build_model(config.model), config.train_config.num_steps) == []


@pytest.mark.parametrize(("overrides", "message"), [
    ({"num_train_steps": -5}, r"^--num_train_steps: -5; expected a number of steps > 0"),
    ({"num_train_steps": 0}, r"^--num_train_steps: 0; expected"),
    ({"keep_checkpoints": 0}, r"^--keep_checkpoints: 0; expected at least 1"),
])
def test_bad_counts_fail_before_anything_is_built(tiny_config_path: Path, tmp_path: Path,
                                                  overrides: dict[str, int], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        train(tiny_config_path, tmp_path / "model", quiet(**overrides))
    assert not (tmp_path / "model").exists()


def test_label_map_errors_name_the_config_a_loaded_config_came_from(
    tiny_config_path: Path, tmp_path: Path
) -> None:
    """train() checks the label maps against num_classes before building anything; for a
    loaded config the errors name ``config_source`` (``objdet train`` passes its file)."""
    two = tmp_path / "two.pbtxt"
    two.write_text("item { id: 1 name: 'raccoon' } item { id: 2 name: 'fox' }")
    overrides = [f"train_input_reader.label_map_path='{two}'"]
    config = objdet.config.load(tiny_config_path, overrides=overrides)
    with pytest.raises(ConfigError, match=rf"^{tiny_config_path}: invalid config: model.ssd."
                                          rf"num_classes is 1 but the largest id in {two} "):
        train(config, tmp_path / "model", quiet(), config_source=tiny_config_path)
    with pytest.raises(ConfigError, match=r"^<config>: invalid config: "):
        train(config, tmp_path / "model", quiet())
    assert not (tmp_path / "model").exists()


def test_num_classes_above_the_largest_id_is_logged(
    tiny_config_path: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config_text = tiny_config_path.read_text().replace("num_classes: 1", "num_classes: 3")
    tiny_config_path.write_text(config_text)
    with caplog.at_level("WARNING", logger="objdet"):
        result = train(tiny_config_path, tmp_path / "model", quiet(num_train_steps=1))
    assert result.step == 1
    warnings = [r.getMessage() for r in caplog.records if r.name == "objdet.engine.training"]
    assert any(
        message.startswith(f"{tiny_config_path}: model.ssd.num_classes is 3 but the largest id ")
        and "predicts ids 2..3, which the label map does not name" in message
        for message in warnings
    ), warnings


def test_an_empty_eval_record_names_the_eval_input_reader(tiny_config_path: Path, tmp_path: Path) -> None:
    from objdet.data.tfrecord import TFRecordWriter
    from objdet.engine.evaluate import build_eval_inputs
    from objdet.errors import DataError

    empty = tmp_path / "empty.record"
    with TFRecordWriter(empty):
        pass
    config = objdet.config.load(
        tiny_config_path,
        overrides=[f"eval_input_reader[0].tf_record_input_reader.input_path=['{empty}']"],
    )
    with pytest.raises(DataError, match=r"^eval_input_reader\[0\]\.tf_record_input_reader\."
                                        r"input_path: the input files hold 0 records: "):
        build_eval_inputs(config)


def test_training_fine_tunes_from_an_od_api_tf2_checkpoint(tmp_path: Path,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    """A TF2 zoo-style checkpoint as fine_tune_checkpoint (type detection), no TensorFlow."""
    fixture = Path(__file__).resolve().parents[1] / "fixtures" / "odapi_parity" / "ssd_mobilenet_v2"
    record = str(REPO_RACCOON / "tfrecord" / "test.record")
    label_map = str(REPO_RACCOON / "object-detection.pbtxt")
    config = objdet.config.load(
        fixture / "pipeline.config",
        overrides=[
            f"train_input_reader.tf_record_input_reader.input_path=['{record}']",
            f"train_input_reader.label_map_path='{label_map}'",
            f"eval_input_reader[0].tf_record_input_reader.input_path=['{record}']",
            f"eval_input_reader[0].label_map_path='{label_map}'",
            f"train_config.fine_tune_checkpoint='{fixture / 'checkpoint' / 'ckpt-0'}'",
            "train_config.fine_tune_checkpoint_type='detection'",
            "train_config.batch_size=2",
            "eval_config.num_examples=2",
        ],
    )
    with caplog.at_level("INFO", logger="objdet.engine.training"):
        result = train(config, tmp_path / "model", quiet(num_train_steps=1))
    assert result.step == 1
    restored = [r.getMessage() for r in caplog.records if "fine_tune_checkpoint" in r.getMessage()]
    counts = re.search(r"\(detection\): loaded (\d+) tensors; 0 skipped for shape; (\d+) model "
                       r"tensors not in the checkpoint", restored[0] if restored else "")
    assert counts, restored
    loaded, fresh = int(counts[1]), int(counts[2])
    assert loaded > 100 and fresh > 0  # the feature extractor restored, the predictor fresh
