"""Fault injection for ``objdet train``, ``eval`` and ``export``, run as real subprocesses.

Each fault must end in one line on stderr, ``objdet <cmd>: error: ...`` naming the path or
field at fault, and exit code 2 (never a traceback); a killed training run must resume from
its last complete checkpoint. Data: four 48x80 images in a TFRecord, the tiny SSD config.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from tiny_detector import example_bytes, sample_image

from objdet.data.tfrecord import TFRecordWriter
from objdet.engine.checkpoint import CheckpointManager
from objdet.engine.checkpoint_file import verify_checkpoint_file
from objdet.engine.training import TrainOptions, train
from objdet.structures.label_map import LabelMap

REPO_ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
# Linux capabilities that let root write into a read-only folder (linux/capability.h).
CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER = 1, 2, 3
PR_CAPBSET_DROP = 24


def _drop_root_file_powers() -> None:
    """Run in the child before exec: without these capabilities root obeys file modes."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER):
        if libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def objdet(*args: str, cwd: Path, unprivileged: bool = False) -> subprocess.CompletedProcess[str]:
    """``python -m objdet ARGS`` in ``cwd``; ``unprivileged``: unable to write read-only
    folders even when the tests run as root."""
    preexec = _drop_root_file_powers if unprivileged and os.geteuid() == 0 else None
    return subprocess.run([sys.executable, "-m", "objdet", *args], cwd=cwd, env=ENV, capture_output=True,
                          text=True, timeout=300, preexec_fn=preexec, check=False)


def assert_one_line_error(result: subprocess.CompletedProcess[str], command: str, *fragments: str) -> str:
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr[-2000:]
    assert lines[0].startswith(f"objdet {command}: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def config_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/fixtures/tiny_ssd.config over a record of four 48x80 images (no random crop)."""
    root = tmp_path_factory.mktemp("fault_train")
    record = root / "tiny.record"
    with TFRecordWriter(record) as writer:
        for seed in range(4):
            writer.write(example_bytes(sample_image(seed=seed), filename=f"img{seed}.png"))
    label_map = root / "label_map.pbtxt"
    LabelMap.from_names(["raccoon"]).save(label_map)
    text = (REPO_ROOT / "tests" / "fixtures" / "tiny_ssd.config").read_text()
    text = text.replace("RECORD_PATH", str(record)).replace("LABEL_MAP_PATH", str(label_map))
    text = text.replace("data_augmentation_options { ssd_random_crop {} }", "")
    path = root / "pipeline.config"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def trained_dir(config_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model_dir with real checkpoints of two training steps (trained in this process)."""
    model_dir = tmp_path_factory.mktemp("trained") / "model"
    train(config_path, model_dir, TrainOptions(num_train_steps=2, checkpoint_every_n=1, num_workers=0,
                                               show_progress=False, device="cpu"))
    return model_dir


@pytest.fixture()
def read_only_folder(tmp_path: Path) -> Any:
    folder = tmp_path / "readonly"
    folder.mkdir()
    folder.chmod(0o555)
    # The child must really be unable to write there, or the test proves nothing.
    probe = subprocess.run([sys.executable, "-c", f"open({str(folder / 'probe')!r}, 'w')"],
                           capture_output=True, check=False,
                           preexec_fn=_drop_root_file_powers if os.geteuid() == 0 else None)
    assert probe.returncode != 0, "a child process could still write into the read-only folder"
    yield folder
    folder.chmod(0o755)


def test_read_only_model_dir(config_path: Path, read_only_folder: Path, tmp_path: Path) -> None:
    result = objdet("train", "--pipeline_config_path", str(config_path), "--model_dir", str(read_only_folder),
                    "--num_train_steps", "2", "--num_workers", "0", "--no_progress", cwd=tmp_path, unprivileged=True)
    assert_one_line_error(result, "train", f"cannot write model_dir {read_only_folder}: {read_only_folder} is "
                                           "not writable (permission denied)")
    assert list(read_only_folder.iterdir()) == []


def test_read_only_export_output_folder(config_path: Path, trained_dir: Path, read_only_folder: Path,
                                        tmp_path: Path) -> None:
    output = read_only_folder / "exported"
    result = objdet("export", "--pipeline_config_path", str(config_path), "--trained_checkpoint_dir",
                    str(trained_dir), "--output_directory", str(output), cwd=tmp_path, unprivileged=True)
    assert_one_line_error(result, "export", f"cannot write output_directory {output}: {read_only_folder} is "
                                            "not writable (permission denied)")
    assert list(read_only_folder.iterdir()) == []


def in_process(argv: list[str], capsys: pytest.CaptureFixture[str]) -> subprocess.CompletedProcess[str]:
    """The CLI's own entry point in this process: stderr and the exit code as a user sees them
    (for faults that need no crash isolation; an interpreter start costs ~5-10 s of the suite)."""
    from objdet.cli.main import main

    capsys.readouterr()
    code = main(argv)
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(argv, code, captured.out, captured.err)


def test_a_flipped_byte_in_a_checkpoint(config_path: Path, trained_dir: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    model_dir = tmp_path / "model"
    shutil.copytree(trained_dir, model_dir)
    checkpoint = model_dir / "ckpt-2.pt"
    weights = CheckpointManager.load(checkpoint)["model"]
    largest = max(weights.values(), key=lambda tensor: tensor.numel())
    data = bytearray(checkpoint.read_bytes())
    start = data.find(largest.numpy().tobytes())
    assert start > 0
    data[start + largest.numel() * 2] ^= 0x04  # in the middle of the tensor's data
    checkpoint.write_bytes(bytes(data))
    assert torch.load(checkpoint, weights_only=False)["step"] == 2  # torch alone notices nothing

    common = ["--pipeline_config_path", str(config_path)]
    # train as a real subprocess; eval and export share its checkpoint loading, in-process.
    runs = {
        "train": objdet("train", *common, "--model_dir", str(model_dir), "--num_train_steps", "4",
                        "--num_workers", "0", "--no_progress", cwd=tmp_path),
        "eval": in_process(["eval", *common, "--checkpoint_dir", str(model_dir), "--run_once"], capsys),
        "export": in_process(["export", *common, "--trained_checkpoint_dir", str(model_dir),
                              "--output_directory", str(tmp_path / "exported")], capsys),
    }
    for command, result in runs.items():
        assert_one_line_error(result, command, f"{checkpoint}: checksum mismatch")
    assert not (tmp_path / "exported").exists()


@pytest.mark.parametrize(("flags", "message"), [
    (["--override", "learning_rate=-0.1"],
     "train_config.optimizer.adam_optimizer.learning_rate.constant_learning_rate.learning_rate: -0.1 is negative"),
    (["--override", "model.ssd.image_resizer.fixed_shape_resizer.height=0"],
     "model.ssd.image_resizer.fixed_shape_resizer.height: 0; an image size must be > 0"),
    (["--num_train_steps", "-5"], "--num_train_steps: -5; expected a number of steps > 0"),
    pytest.param(["--device", "cuda"], "--device 'cuda': no CUDA GPU is visible",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")),
], ids=["negative-learning-rate", "zero-image-size", "negative-num-train-steps", "cuda-without-gpu"])
def test_bad_settings_fail_before_training(config_path: Path, tmp_path: Path, flags: list[str], message: str,
                                          capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process (a settings error needs no crash isolation)."""
    monkeypatch.chdir(tmp_path)
    model_dir = tmp_path / "model"
    argv = ["train", "--pipeline_config_path", str(config_path), "--model_dir", str(model_dir),
            "--num_workers", "0", "--no_progress", *flags]
    assert_one_line_error(in_process(argv, capsys), "train", message)
    assert not model_dir.exists()


def test_killed_training_resumes_from_its_last_complete_checkpoint(config_path: Path, tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    command = [sys.executable, "-m", "objdet", "train", "--pipeline_config_path", str(config_path),
               "--model_dir", str(model_dir), "--num_train_steps", "12", "--checkpoint_every_n", "2",
               "--num_workers", "0", "--no_progress"]
    manager = CheckpointManager(model_dir)
    process = subprocess.Popen(command, cwd=tmp_path, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while not (model_dir / "checkpoint.json").exists():
            assert process.poll() is None, "training exited before its first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint within 240 s"
            time.sleep(0.02)
        assert process.poll() is None, "training finished before it could be killed"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    killed_at = int(manager.load(manager.latest_path())["step"])  # type: ignore[arg-type]
    assert 2 <= killed_at < 12
    # A save cut short by a kill leaves only a hidden temporary file; it must never be loaded.
    latest_bytes = (model_dir / f"ckpt-{killed_at}.pt").read_bytes()
    (model_dir / f".ckpt-{killed_at + 2}.pt.x1y2z3.tmp").write_bytes(latest_bytes[: len(latest_bytes) // 2])

    resumed = subprocess.run(command, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300,
                             check=False)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming from step {killed_at}" in resumed.stderr
    assert "trained to step 12" in resumed.stdout
    final = model_dir / "ckpt-12.pt"
    assert manager.read_index().latest == final.name
    assert verify_checkpoint_file(final) and manager.load(final)["step"] == 12
