"""The catalog of the TF2 zoo, its shipped configs and label map, the mirror and cache
locations."""

from __future__ import annotations

import fnmatch
import tomllib
from importlib.resources import as_file
from pathlib import Path

import pytest

import objdet.config
from objdet.errors import ObjdetError
from objdet.structures.label_map import load_label_map
from objdet.zoo import CATALOG, ZooCache, find_model, objdet_home
from objdet.zoo.catalog import DEFAULT_URL_PREFIX, shipped_config, shipped_label_map

REPO = Path(__file__).resolve().parents[2]


def test_every_tf2_zoo_model_is_listed_with_its_figures_and_url() -> None:
    assert len(CATALOG) == 41
    model = CATALOG["ssd_mobilenet_v2_320x320_coco17_tpu-8"]
    assert (model.speed_ms, model.coco_map, model.outputs) == (19, (20.2,), ("Boxes",))
    assert model.url() == (f"{DEFAULT_URL_PREFIX}tf2/20200711/"
                           "ssd_mobilenet_v2_320x320_coco17_tpu-8.tar.gz")
    masks = CATALOG["mask_rcnn_inception_resnet_v2_1024x1024_coco17_gpu-8"]
    assert masks.coco_map_text() == "39.0/34.6" and masks.outputs == ("Boxes", "Masks")
    assert CATALOG["centernet_hg104_512x512_coco17_tpu-8"].date == "20200713"
    for name, entry in CATALOG.items():
        assert entry.name == name and 1 <= len(entry.coco_map) <= len(entry.outputs)
        assert entry.url().startswith("http://download.tensorflow.org/models/object_detection/tf2/")


@pytest.mark.parametrize("mirror", ["http://127.0.0.1:8000/zoo", "http://127.0.0.1:8000/zoo/"])
def test_objdet_zoo_url_replaces_the_download_prefix(
    mirror: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OBJDET_ZOO_URL", mirror)
    url = CATALOG["efficientdet_d0_coco17_tpu-32"].url()
    assert url == "http://127.0.0.1:8000/zoo/tf2/20200711/efficientdet_d0_coco17_tpu-32.tar.gz"


def test_an_unknown_name_is_one_line_naming_the_closest() -> None:
    with pytest.raises(ObjdetError, match="did you mean ssd_mobilenet_v2_320x320_coco17_tpu-8"):
        find_model("ssd_mobilenet_v2_320x320_coco17")


@pytest.mark.parametrize("name", [name for name, model in CATALOG.items() if model.config])
def test_each_shipped_config_parses(name: str) -> None:
    config_file = shipped_config(CATALOG[name])
    assert config_file is not None
    with as_file(config_file) as path:
        config = objdet.config.load(path)
    assert config.model.WhichOneof("model") in {"ssd", "faster_rcnn", "center_net"}


def test_the_shipped_label_map_is_coco() -> None:
    with as_file(shipped_label_map()) as path:
        label_map = load_label_map(path)
    assert len(label_map) == 80 and label_map.max_id == 90
    assert label_map.item(1).display_name == "person"


def test_package_data_ships_every_zoo_data_file() -> None:
    """What pyproject.toml's package-data globs take of src/objdet/zoo/data: all of it."""
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    globs = pyproject["tool"]["setuptools"]["package-data"]["objdet.zoo"]
    package = REPO / "src" / "objdet" / "zoo"
    files = [path.relative_to(package).as_posix()
             for path in (package / "data").rglob("*") if path.is_file()]
    # NOTICE, the COCO label map and its keypoint label map, then one config per model
    assert len(files) == 3 + sum(model.config is not None for model in CATALOG.values())
    assert all(any(fnmatch.fnmatch(file, glob) for glob in globs) for file in files)


def test_the_cache_lives_in_objdet_home_or_the_user_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OBJDET_HOME", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert ZooCache().root == tmp_path / "xdg" / "objdet" / "zoo"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert objdet_home() == tmp_path / "user" / ".cache" / "objdet"
    monkeypatch.setenv("OBJDET_HOME", str(tmp_path / "elsewhere"))
    assert ZooCache().root == tmp_path / "elsewhere" / "zoo"
