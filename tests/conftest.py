"""Shared test fixtures: paths to the bundled and shared sample data."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

# CI runs two pytest workers on two cores: one intra-op thread each avoids oversubscription.
torch.set_num_threads(1)

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
RACCOON = REPO_ROOT / "datasets" / "raccoon"


@pytest.fixture(scope="session")
def raccoon_dir() -> Path:
    return RACCOON


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"shared data not found at {SHARED_DATA} (expected ../shared beside the repo)")
    return SHARED_DATA


@pytest.fixture()
def tiny_config_path(tmp_path: Path) -> Path:
    """tests/fixtures/tiny_ssd.config with its input paths pointing at the raccoon test record."""
    text = (REPO_ROOT / "tests" / "fixtures" / "tiny_ssd.config").read_text()
    text = text.replace("RECORD_PATH", str(RACCOON / "tfrecord" / "test.record"))
    text = text.replace("LABEL_MAP_PATH", str(RACCOON / "object-detection.pbtxt"))
    path = tmp_path / "tiny_ssd.config"
    path.write_text(text)
    return path
