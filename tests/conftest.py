"""Shared test fixtures: paths to the bundled and shared sample data."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

# CI runs two pytest workers on two cores: one intra-op thread each avoids oversubscription,
# in the workers and in the processes they start (objdet commands, servers, trainers: torch and
# ONNX Runtime take their default thread count from OMP_NUM_THREADS); a test that sets a
# thread count (a flag, an explicit environment) still gets it.
torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")

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


# -- a tiny trained checkpoint and its exports, built once per session (export, inference) --
@pytest.fixture(scope="session")
def tiny_training(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from tiny_detector import write_tiny_training

    return write_tiny_training(tmp_path_factory.mktemp("tiny_training"))


@pytest.fixture(scope="session")
def exported(tiny_training, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """input_type -> the export directory of the tiny checkpoint (exported on first use)."""
    from objdet.export.exporter import export_inference_graph

    # One export per input type for the whole run: pytest-xdist's workers share it (the tiny
    # checkpoint is the same in every worker: seeded), the first to ask writes it under a lock.
    # Tests only read it (copy it to change it).
    root = _run_wide_directory(tmp_path_factory, "exports")

    def export(input_type: str) -> Path:
        output = root / input_type
        with _locked(root / f"{input_type}.lock"):
            if not (output / "signature.json").is_file():
                # Every format for image_tensor (tests/export/test_detector_program.py runs its
                # detector.pt2); the other input types' tests run model.pt2 and model.onnx only.
                export_inference_graph(
                    pipeline_config_path=tiny_training.config_path,
                    trained_checkpoint_dir=tiny_training.checkpoint_dir,
                    output_directory=output, input_type=input_type,
                    formats=None if input_type == "image_tensor" else ("pt2", "onnx"),
                )
        return output

    return export


def _run_wide_directory(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    """A directory shared by every pytest-xdist worker of this run (each worker's base temp
    is a child of the run's); this process's own one without xdist."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent
    directory = base / f"run_wide_{name}"
    directory.mkdir(exist_ok=True)
    return directory


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (created), held across processes for the block."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def predictor_for(exported):  # type: ignore[no-untyped-def]
    """input_type -> a Predictor over that export (loaded once)."""
    from objdet.inference.predictor import Predictor

    predictors: dict[str, Predictor] = {}

    def load(input_type: str) -> Predictor:
        if input_type not in predictors:
            predictors[input_type] = Predictor.from_export(exported(input_type))
        return predictors[input_type]

    return load


@pytest.fixture(scope="session")
def exported_image_tensor(exported) -> Path:  # type: ignore[no-untyped-def]
    return exported("image_tensor")


@pytest.fixture(scope="session")
def predictor(predictor_for):  # type: ignore[no-untyped-def]
    return predictor_for("image_tensor")
