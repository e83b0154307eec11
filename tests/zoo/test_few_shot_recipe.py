"""README's few-shot recipe (the OD API's "rubber ducky" colab), command by command, against
the zoo mirror on 127.0.0.1: a handful of labelled images -> TFRecord -> zoo download -> the
zoo's pipeline.config edited as the README says -> train from "zoo:NAME" -> export -> detect."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from zoo_mirror import NAME, Zoo

import objdet.config
from objdet.cli.main import main
from objdet.engine.checkpoint import CheckpointManager
from objdet.models import build_model
from objdet.models.checkpoints.tf_bundle import TFCheckpoint
from objdet.models.checkpoints.variable_map import to_torch_layout


def _ducks(directory: Path) -> tuple[Path, Path, Path]:
    """Five 96x96 images, one yellow 'duck' box each, in the raccoon CSV layout."""
    images = directory / "ducks"
    images.mkdir()
    rows = ["filename,width,height,class,xmin,ymin,xmax,ymax"]
    rng = np.random.default_rng(0)
    for index in range(5):
        pixels = rng.integers(0, 80, size=(96, 96, 3), dtype=np.uint8)
        x1, y1 = 10 + 8 * index, 20 + 4 * index
        pixels[y1:y1 + 30, x1:x1 + 36] = (230, 200, 40)
        Image.fromarray(pixels).save(images / f"duck{index}.png")
        rows.append(f"duck{index}.png,96,96,duck,{x1},{y1},{x1 + 36},{y1 + 30}")
    csv_path = directory / "ducks.csv"
    csv_path.write_text("\n".join(rows) + "\n")
    label_map = directory / "ducks.pbtxt"
    label_map.write_text("item { id: 1 name: 'duck' }\n")
    return images, csv_path, label_map


def test_the_readme_few_shot_recipe_runs_end_to_end(
    zoo: Zoo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    images, csv_path, label_map = _ducks(tmp_path)
    record = tmp_path / "out" / "ducks.record"
    assert main(["convert", "csv", "--csv_path", str(csv_path), "--images_dir", str(images),
                 "--label_map_path", str(label_map), "--output_path", str(record)]) == 0
    assert main(["zoo", "download", NAME]) == 0

    # "copy .../zoo/NAME/pipeline.config to ducks.config; set num_classes: 1, the record and
    # label map paths, and fine_tune_checkpoint ... detection" (and a batch that fits here)
    text = (zoo.cache.model_dir(NAME) / "pipeline.config").read_text()
    text = re.sub(r"num_classes: \d+", "num_classes: 1", text)
    text = re.sub(r'label_map_path: "[^"]*"', f'label_map_path: "{label_map}"', text)
    text = re.sub(r'input_path: "[^"]*"', f'input_path: "{record}"', text)
    text = re.sub(r'fine_tune_checkpoint: "[^"]*"', f'fine_tune_checkpoint: "zoo:{NAME}"', text)
    text = re.sub(r'fine_tune_checkpoint_type: "[^"]*"', 'fine_tune_checkpoint_type: "detection"',
                  text)
    text = re.sub(r"batch_size: \d+", "batch_size: 2", text, count=1)
    config = tmp_path / "ducks.config"
    config.write_text(text)

    capsys.readouterr()
    assert main(["train", "--pipeline_config_path", str(config), "--model_dir", "runs/ducks",
                 "--num_train_steps", "2", "--num_workers", "0"]) == 0
    manager = CheckpointManager(tmp_path / "runs" / "ducks")
    latest = manager.latest_path()
    assert latest is not None
    state = manager.load(latest)["model"]
    # The fine-tune started from the zoo's checkpoint: a backbone weight that the two steps at
    # a cosine warm-up learning rate barely move is still the checkpoint's value.
    reader = TFCheckpoint.open(zoo.cache.checkpoint_prefix(NAME))
    keys = list(reader.keys())
    key = next(k for k in keys if k.startswith("model/_feature_extractor/")
               and k.endswith("moving_mean/.ATTRIBUTES/VARIABLE_VALUE"))
    model = build_model(objdet.config.load(config).model)
    target = model.tf2_variable_map()[key]
    expected = torch.from_numpy(to_torch_layout(reader.read(key), target.layout).copy())
    moved = (state[target.name] - expected).abs().max()
    assert float(moved) < 0.5 * float(expected.abs().max() + 1e-6), key

    assert main(["export", "--pipeline_config_path", str(config), "--trained_checkpoint_dir",
                 "runs/ducks", "--output_directory", "exported/ducks", "--formats", "pt2"]) == 0
    capsys.readouterr()
    assert main(["detect", "--model", "exported/ducks", "--image", str(images / "duck0.png"),
                 "--output", "duck0_detections.png", "--min_score", "0"]) == 0
    (result,) = json.loads(capsys.readouterr().out)
    assert result["image"] == str(images / "duck0.png") and result["detections"]
    assert {d["class_name"] for d in result["detections"]} == {"duck"}  # the label map's one class
    assert Image.open("duck0_detections.png").size == (96, 96)
