"""``torchrun --nproc_per_node=2 -m objdet train``: DDP on the CPU (gloo)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

from objdet.engine.checkpoint import CheckpointManager


def test_two_process_ddp_training(tiny_config_path: Path, tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "objdet", "train", "--pipeline_config_path", str(tiny_config_path),
        "--model_dir", str(model_dir), "--num_train_steps", "2", "--checkpoint_every_n", "2",
        "--num_workers", "0", "--no_progress",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    completed = subprocess.run(command, capture_output=True, text=True, timeout=180, env=env, check=False)
    assert completed.returncode == 0, completed.stderr[-3000:]
    state = CheckpointManager.load(model_dir / "ckpt-2.pt")
    assert state["step"] == 2
    # batch_size 4 is the global batch: each of the 2 ranks took 2 images per step.
    assert state["samples_seen"] == 4
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
