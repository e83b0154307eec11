"""Fixtures for inference tests: the tiny checkpoint and exports of tests/export.

tests/ has no packages (pytest's default import mode), so the shared helper module
``tests/export/tiny_detector.py`` is put on sys.path by hand.
"""

from __future__ import annotations

import sys
from pathlib import Path

_EXPORT_TESTS = str(Path(__file__).resolve().parents[1] / "export")
if _EXPORT_TESTS not in sys.path:
    sys.path.insert(0, _EXPORT_TESTS)

import pytest
from tiny_detector import write_tiny_training

from objdet.export.exporter import export_inference_graph


@pytest.fixture(scope="session")
def tiny_training(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return write_tiny_training(tmp_path_factory.mktemp("tiny_training"))


@pytest.fixture(scope="session")
def exported_image_tensor(tiny_training, tmp_path_factory: pytest.TempPathFactory) -> Path:  # type: ignore[no-untyped-def]
    output = tmp_path_factory.mktemp("exports") / "image_tensor"
    export_inference_graph(
        pipeline_config_path=tiny_training.config_path,
        trained_checkpoint_dir=tiny_training.checkpoint_dir,
        output_directory=output, input_type="image_tensor",
    )
    return output


@pytest.fixture(scope="session")
def predictor(exported_image_tensor: Path):  # type: ignore[no-untyped-def]
    """A Predictor over the image_tensor export (loaded once)."""
    from objdet.inference.predictor import Predictor

    return Predictor.from_export(exported_image_tensor)
