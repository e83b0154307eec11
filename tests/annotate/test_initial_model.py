"""Suggestions before the first training round: ``--initial_model`` (an export, a model
directory or a cached zoo model) suggests boxes as version 0, its classes mapped onto the
project's labels, until the trainer's first version replaces it."""

from __future__ import annotations

import shutil
import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from annotate_server import LABEL_MAP, AnnotateServer, ProjectFiles, make_project

from objdet.annotate.initial_model import InitialModel, class_mapping, load_initial_model
from objdet.errors import ConfigError
from objdet.structures.label_map import LabelMap, load_label_map

if TYPE_CHECKING:
    from tiny_detector import TinyTraining

ZOO_NAME = "ssd_mobilenet_v2_320x320_coco17_tpu-8"


@pytest.fixture(scope="module")
def tiny(tiny_training: TinyTraining, exported_image_tensor: Path,
         tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the session's export of the tiny SSD, whose classes are raccoon and fox; a model
    directory of it: pipeline.config + checkpoint, as ``objdet import-checkpoint`` writes)."""
    model_dir = tmp_path_factory.mktemp("initial_model") / "tiny_model"
    shutil.copytree(tiny_training.checkpoint_dir, model_dir)
    shutil.copyfile(tiny_training.config_path, model_dir / "pipeline.config")
    shutil.copyfile(tiny_training.label_map_path, model_dir.parent / "label_map.pbtxt")
    return exported_image_tensor, model_dir


def test_classes_map_by_name_or_as_told() -> None:
    model = {1: ("/m/01dws", "bear"), 2: ("cat",), 3: ("raccoon",)}
    project = LabelMap.from_names(["raccoon", "fox"], "labels.pbtxt")
    assert class_mapping(model, project, None, "m") == {3: 1}
    assert class_mapping(model, project, "Bear=raccoon, 2=fox", "m") == {1: 1, 2: 2}
    assert class_mapping(model, project, "*=fox", "m") == {1: 2, 2: 2, 3: 2}
    with pytest.raises(ConfigError, match="none of its 2 classes .* is a label of labels.pbtxt"):
        class_mapping({1: ("bear",), 2: ("cat",)}, project, None, "m")
    with pytest.raises(ConfigError, match="'bear=wolf'; expected MODEL_CLASS=LABEL with LABEL one of fox, raccoon"):
        class_mapping(model, project, "bear=wolf", "m")
    with pytest.raises(ConfigError, match="'dog' is not a class of --initial_model m"):
        class_mapping(model, project, "dog=fox", "m")


def test_merged_classes_give_one_box_per_object(tiny: tuple[Path, Path]) -> None:
    import numpy as np
    import torch
    from tiny_detector import sample_image
    from torchvision.ops import box_iou

    export, _ = tiny
    pixels = torch.from_numpy(sample_image(96, 128)).permute(2, 0, 1).contiguous()  # [3, H, W]
    by_name = load_initial_model(str(export), load_label_map(LABEL_MAP))  # raccoon only: fox dropped
    raw = by_name.predictor.predict_pixels(pixels)
    assert by_name.class_map == {1: 1}
    assert np.array_equal(by_name.predict(pixels).scores, raw.scores[raw.labels == 1])
    merged = InitialModel(str(export), by_name.predictor, {1: 1, 2: 1})  # both onto raccoon
    found = merged.predict(pixels)
    assert set(found.labels.tolist()) == {1} and 0 < len(found) < len(raw)
    overlaps = box_iou(torch.from_numpy(found.boxes), torch.from_numpy(found.boxes)).fill_diagonal_(0)
    assert float(overlaps.max()) <= 0.5


def test_a_model_dir_or_cached_zoo_model_is_used_and_a_missing_one_named(tiny: tuple[Path, Path], tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    _, model_dir = tiny
    monkeypatch.setenv("OBJDET_HOME", str(tmp_path))
    with pytest.raises(ConfigError, match=f"zoo:{ZOO_NAME}: not in the zoo cache .*objdet zoo download {ZOO_NAME}"):
        load_initial_model(f"zoo:{ZOO_NAME}", load_label_map(LABEL_MAP))
    converted = tmp_path / "zoo" / ZOO_NAME / "objdet"  # what `objdet zoo download` converts into
    shutil.copytree(model_dir, converted)
    initial = load_initial_model(f"zoo:{ZOO_NAME}", load_label_map(LABEL_MAP), "fox=raccoon")
    assert initial.class_map == {2: 1}
    assert load_initial_model(str(model_dir), load_label_map(LABEL_MAP)).class_map == {1: 1}  # a model dir
    with pytest.raises(ConfigError, match="--initial_model .*nowhere: neither a directory nor zoo:NAME"):
        load_initial_model(str(tmp_path / "nowhere"), load_label_map(LABEL_MAP))


def test_the_initial_model_suggests_until_the_first_version(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    export, model_dir = tiny
    files = make_project(tmp_path, num_images=3)
    labels = model_dir.parent / "label_map.pbtxt"  # raccoon and fox, as the tiny model's
    project = ProjectFiles(files.images, files.config, labels, files.model_dir, files.image_names)
    server = AnnotateServer(project, "--no_train", "--order", "file", "--min_score", "0",
                            "--initial_model", str(export), "--initial_labels", "*=raccoon")
    try:
        task = server.next_task()
        assert (task["model_version"], task["model_name"]) == (0, f"starting model {export.name}")
        assert task["boxes"] and {box["label"] for box in task["boxes"]} == {"raccoon"}
        _, status = server.request("GET", "/api/status")
        assert (status["model_version"], status["model_name"]) == (0, f"starting model {export.name}")
        server.answer(task, "accept", boxes=[{"box_xyxy": task["boxes"][0]["box_xyxy"], "label": "raccoon",
                                              "source": "suggested"}])
        database = project.model_dir / "annotate" / "answers.sqlite"
        with sqlite3.connect(database) as connection:
            assert connection.execute("SELECT model_version, box_sources FROM answers").fetchall() == [
                (0, '["suggested"]')]
            assert connection.execute("SELECT value FROM meta WHERE key = 'initial_model'").fetchone() == (
                f'"{export}"',)

        shutil.copytree(export, project.model_dir / "export" / "1")  # the trainer's first version
        deadline = time.monotonic() + 60
        while server.request("GET", "/api/status")[1]["model_version"] != 1:
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.2)
        task = server.next_task()
        assert (task["model_version"], task["model_name"]) == (1, "v1")
        assert {box["label"] for box in task["boxes"]} == {"raccoon", "fox"}  # its own classes now
    finally:
        assert server.stop() == 0, server.log()
