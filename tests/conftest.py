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


# -- a tiny trained checkpoint and its exports, built once per session (export, inference) --
@pytest.fixture(scope="session")
def tiny_training(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from tiny_detector import write_tiny_training

    return write_tiny_training(tmp_path_factory.mktemp("tiny_training"))


@pytest.fixture(scope="session")
def exported(tiny_training, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """input_type -> the export directory of the tiny checkpoint (exported on first use)."""
    from objdet.export.exporter import export_inference_graph

    directories: dict[str, Path] = {}

    def export(input_type: str) -> Path:
        if input_type not in directories:
            output = tmp_path_factory.mktemp("exports") / input_type
            # Every format for image_tensor (tests/export/test_detector_program.py runs its
            # detector.pt2); the other input types' tests run model.pt2 and model.onnx only.
            export_inference_graph(
                pipeline_config_path=tiny_training.config_path,
                trained_checkpoint_dir=tiny_training.checkpoint_dir,
                output_directory=output, input_type=input_type,
                formats=None if input_type == "image_tensor" else ("pt2", "onnx"),
            )
            directories[input_type] = output
        return directories[input_type]

    return export


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
