"""Fixtures for export tests: a tiny checkpoint and its exports (built once per session)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from tiny_detector import TinyTraining, write_tiny_training

from objdet.export.exporter import export_inference_graph
from objdet.inference.predictor import Predictor


@pytest.fixture(scope="session")
def tiny_training(tmp_path_factory: pytest.TempPathFactory) -> TinyTraining:
    return write_tiny_training(tmp_path_factory.mktemp("tiny_training"))


@pytest.fixture(scope="session")
def exported(
    tiny_training: TinyTraining, tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str], Path]:
    """input_type -> the export directory of the tiny checkpoint (exported on first use)."""
    directories: dict[str, Path] = {}

    def export(input_type: str) -> Path:
        if input_type not in directories:
            output = tmp_path_factory.mktemp("exports") / input_type
            export_inference_graph(
                pipeline_config_path=tiny_training.config_path,
                trained_checkpoint_dir=tiny_training.checkpoint_dir,
                output_directory=output, input_type=input_type,
            )
            directories[input_type] = output
        return directories[input_type]

    return export


@pytest.fixture(scope="session")
def predictor_for(exported: Callable[[str], Path]) -> Callable[[str], Predictor]:
    """input_type -> a Predictor over that export (loaded once)."""
    predictors: dict[str, Predictor] = {}

    def load(input_type: str) -> Predictor:
        if input_type not in predictors:
            predictors[input_type] = Predictor.from_export(exported(input_type))
        return predictors[input_type]

    return load
