"""Suggestions before the first training round: ``--initial_model`` (an export, a model
directory or a cached zoo model) suggests boxes as version 0, its classes mapped onto the
project's labels, until the trainer's first version replaces it."""

from __future__ import annotations

import logging
import shutil
import sqlite3
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from annotate_server import LABEL_MAP, TEST_RECORD, AnnotateServer, ProjectFiles, make_project

import objdet.config
from objdet.annotate.initial_model import (
    InitialModel,
    class_mapping,
    initial_weights,
    load_initial_model,
)
from objdet.annotate.trainer import (
    StartingPoint,
    TrainerSettings,
    announce_start,
    start_from,
    starting_point,
    train_round,
    training_config,
)
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


def test_the_first_round_fine_tunes_from_the_initial_models_weights(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    import torch

    export, _ = tiny
    files = make_project(tmp_path, num_images=1)  # raccoon only: the tiny model's 2-class head does not fit
    settings = TrainerSettings(database="", images=str(files.images), label_map_path=str(files.label_map),
                               pipeline_config_path=str(files.config), model_dir=str(files.model_dir),
                               steps_per_round=1, initial_model=str(export))
    result, start = train_round(settings, TEST_RECORD)  # a round's training, without its export
    assert result.step == 1
    assert start == StartingPoint("initial_model", str(export / "weights.pt"))
    initial = torch.load(export / "weights.pt", weights_only=True)
    trained = torch.load(files.model_dir / "ckpt-1.pt", weights_only=False)["model"]
    backbone = [key for key, value in trained.items()  # its parameters (batch-norm statistics move more)
                if key.startswith("feature_extractor.") and value.is_floating_point() and "running_" not in key]
    assert len(backbone) > 100
    for key in backbone:  # one Adam step (learning rate 0.001) away from the initial weights
        assert torch.allclose(trained[key], initial[key], atol=0.0015), key
    assert any(key not in initial or value.shape != initial[key].shape  # 2 classes -> 1: a fresh class head
               for key, value in trained.items() if "class_heads" in key)
    config = training_config(settings, TEST_RECORD)
    assert starting_point(settings, config) == StartingPoint("checkpoint", str(files.model_dir / "ckpt-1.pt"))


def test_the_first_round_restores_each_class_head_row_onto_its_label(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    """The tiny model's classes are (raccoon, fox), the project's (fox, raccoon): restored by
    position, each label would get the other's weights; remapped, the restored model (zero
    training steps) scores every project label as the initial model's suggestions do."""
    import numpy as np
    import torch
    from tiny_detector import sample_image

    from objdet.engine.fine_tune import load_fine_tune_checkpoint
    from objdet.inference.predictor import Predictor
    from objdet.models import build_model
    from objdet.models.contract import as_detection_model

    export, model_dir = tiny
    labels = tmp_path / "fox_first.pbtxt"
    LabelMap.from_names(["fox", "raccoon"]).save(labels)
    settings = TrainerSettings(database="", images=str(tmp_path), label_map_path=str(labels),
                               pipeline_config_path=str(model_dir / "pipeline.config"),
                               model_dir=str(tmp_path / "model"), initial_model=str(export))
    config = training_config(settings, TEST_RECORD)
    start = starting_point(settings, config)
    assert start == StartingPoint("initial_model", str(export / "weights.pt"))
    start_from(config, start, settings)  # what the first round restores, through the engine
    assert config.train_config.fine_tune_checkpoint == str(tmp_path / "model" / "annotate" / "initial_weights.pt")
    model = build_model(config.model)
    load_fine_tune_checkpoint(model, config.train_config.fine_tune_checkpoint, "detection")
    restored = Predictor(model=model, network=as_detection_model(model).predict)

    initial = load_initial_model(str(export), load_label_map(labels))
    assert initial.class_map == {1: 2, 2: 1}  # by name: raccoon -> 2, fox -> 1
    pixels = torch.from_numpy(sample_image(96, 128)).permute(2, 0, 1).contiguous()  # [3, H, W]
    suggested, found = initial.predict(pixels), restored.predict_pixels(pixels)
    assert set(suggested.labels.tolist()) == {1, 2}
    for label in (1, 2):
        expected = np.sort(suggested.scores[suggested.labels == label])
        np.testing.assert_allclose(np.sort(found.scores[found.labels == label]), expected, rtol=0, atol=1e-5)


def test_an_initial_model_of_another_architecture_is_named_and_not_trained_from(
        tiny: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    _, model_dir = tiny
    files = make_project(tmp_path, num_images=1)
    settings = TrainerSettings(database="", images=str(files.images), label_map_path=str(files.label_map),
                               pipeline_config_path=str(files.config), model_dir=str(files.model_dir),
                               initial_model=str(model_dir))
    config = training_config(settings, tmp_path / "train.record")
    assert starting_point(settings, config) == StartingPoint("initial_model", str(model_dir / "ckpt-7.pt"))
    monkeypatch.setenv("OBJDET_HOME", str(tmp_path))
    shutil.copytree(model_dir, tmp_path / "zoo" / ZOO_NAME / "objdet")
    assert initial_weights(f"zoo:{ZOO_NAME}").weights_path == tmp_path / "zoo" / ZOO_NAME / "objdet" / "ckpt-7.pt"

    config.model.ssd.feature_extractor.type = "ssd_mobilenet_v1"
    config.train_config.fine_tune_checkpoint = "backbone.pt"
    start = starting_point(settings, config)
    assert start == StartingPoint("fine_tune_checkpoint", "backbone.pt", note=(
        f"--initial_model {model_dir} is ssd/ssd_mobilenet_v2, --pipeline_config_path {files.config} is "
        "ssd/ssd_mobilenet_v1: the first round starts from fine tune checkpoint backbone.pt"))
    config_path = tmp_path / "mobilenet_v1.config"
    objdet.config.save(config, config_path)
    status: dict[str, object] = {}
    with caplog.at_level(logging.INFO, logger="objdet.annotate.trainer"):
        announce_start(replace(settings, pipeline_config_path=str(config_path)), status)
    note = str(start.note).replace(str(files.config), str(config_path))
    assert [record.getMessage() for record in caplog.records] == [note]  # said once, at start
    assert status["started_from"] == {"source": "fine_tune_checkpoint", "checkpoint": "backbone.pt", "note": note}
    untrained = tmp_path / "untrained"  # a model directory without a checkpoint
    untrained.mkdir()
    shutil.copyfile(model_dir / "pipeline.config", untrained / "pipeline.config")
    settings.initial_model = str(untrained)
    assert starting_point(settings, config).note == (
        f"--initial_model {untrained}: {untrained}: no checkpoint found (expected ckpt-<step>.pt files); "
        "the first round starts from fine tune checkpoint backbone.pt")
