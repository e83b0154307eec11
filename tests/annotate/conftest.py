"""Fixtures of the annotate tests: tiny projects over raccoon images and real servers."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from annotate_server import AnnotateServer, ProjectFiles, make_project

if TYPE_CHECKING:
    from tiny_detector import TinyTraining


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, tiny_training: TinyTraining,
           exported_image_tensor: Path) -> Iterator[tuple[AnnotateServer, ProjectFiles]]:
    """A project with two labels (raccoon, fox) whose model (the tiny SSD's random weights,
    which suggest many boxes) is exported as version 1 (one server per test module, for the
    page tests in each browser)."""
    root = tmp_path_factory.mktemp("annotate_page")
    project = make_project(root, num_images=6)
    model_dir = root / "model"
    shutil.copytree(tiny_training.checkpoint_dir, model_dir)
    # what the trainer process does first (export_initial_model): the checkpoint becomes version 1
    shutil.copytree(exported_image_tensor, model_dir / "export" / "1")
    project = ProjectFiles(project.images, tiny_training.config_path, tiny_training.label_map_path, model_dir,
                           project.image_names)
    server = AnnotateServer(project, "--no_train", "--order", "file")
    yield server, project
    assert server.stop() == 0, server.log()
