"""``objdet zoo list|show|download`` and ``fine_tune_checkpoint: "zoo:NAME"``, online (the
mirror on 127.0.0.1) and offline (the mirror pointed at a dead port), and a model objdet
cannot build yet (downloaded, not converted, with a warning naming why)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from range_http_server import dead_url
from zoo_mirror import NAME, REFERENCE, Zoo, make_tarball

import objdet.config
from objdet.cli.main import main
from objdet.engine.fine_tune import load_fine_tune_checkpoint
from objdet.errors import DataError, ObjdetError
from objdet.zoo import CATALOG
from objdet.zoo.catalog import shipped_config

# A zoo model the OD API ships no config for, served with a DeepMAC config (a CenterNet
# objdet cannot build yet: DeepMAC is its own meta-architecture).
UNBUILDABLE = "centernet_mobilenetv2fpn_512x512_coco17_kpts"
KEYPOINTS = "centernet_resnet50_v2_512x512_kpts_coco17_tpu-8"


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    """The reference's SSD (the architecture of the checkpoint in the served tarball)."""
    from objdet.models import build_model

    return build_model(objdet.config.load(REFERENCE / "pipeline.config").model)


def _objdet(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(["zoo", *args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_download_then_everything_works_offline(
    zoo: Zoo, model: torch.nn.Module, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    status, out, err = _objdet(capsys, "download", NAME)
    assert status == 0, err
    assert f"objdet model directory: {zoo.cache.converted_dir(NAME)}" in out
    sha256 = zoo.cache.record(NAME).sha256  # type: ignore[union-attr]

    monkeypatch.setenv("OBJDET_ZOO_URL", dead_url())
    status, out, _ = _objdet(capsys, "list")
    assert status == 0 and f"{len(CATALOG)} models; 1 cached" in out
    assert [line.split()[-1] for line in out.splitlines() if line.startswith(NAME)] == ["yes"]
    status, out, _ = _objdet(capsys, "show", NAME)
    assert status == 0
    assert f"sha256:    {sha256} (recorded at the first download)" in out
    assert f"converted to {zoo.cache.converted_dir(NAME)}" in out
    assert "builds:    yes (its downloaded pipeline.config)" in out
    status, out, _ = _objdet(capsys, "download", NAME)
    assert status == 0 and "cached (files verified)" in out
    report = load_fine_tune_checkpoint(model, f"zoo:{NAME}", "full")
    assert report.loaded > 0 and not report.missing
    assert len(zoo.state.requests) == 1


def test_offline_with_nothing_cached_is_one_line_naming_the_model_and_url(
    tmp_path: Path, model: torch.nn.Module, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mirror = dead_url()
    monkeypatch.setenv("OBJDET_ZOO_URL", mirror)
    monkeypatch.setenv("OBJDET_HOME", str(tmp_path / "home"))
    url = f"{mirror}tf2/20200711/{NAME}.tar.gz"
    status, _, err = _objdet(capsys, "download", NAME)
    assert status == 2 and err.count("\n") == 1
    assert err.startswith(f"objdet zoo: error: zoo model {NAME} (not in the cache") and url in err
    with pytest.raises(DataError) as failed:
        load_fine_tune_checkpoint(model, f"zoo:{NAME}", "detection")
    message = str(failed.value)
    assert message.startswith(f"train_config.fine_tune_checkpoint 'zoo:{NAME}': zoo model {NAME}")
    assert url in message and "\n" not in message
    assert not (tmp_path / "home" / "zoo" / NAME).exists()
    with pytest.raises(ObjdetError, match="'zoo:nope': 'nope' is not a model of the zoo"):
        load_fine_tune_checkpoint(model, "zoo:nope", "detection")


def test_fine_tune_from_zoo_downloads_a_missing_model_with_a_log_line(
    zoo: Zoo, model: torch.nn.Module, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="objdet.zoo"):
        report = load_fine_tune_checkpoint(model, f"zoo:{NAME}", "detection")
    assert report.loaded > 0 and zoo.cache.record(NAME) is not None
    assert any(f"zoo:{NAME} is not in the cache" in record.getMessage()
               and zoo.url in record.getMessage() for record in caplog.records)


def test_a_model_objdet_cannot_build_is_downloaded_but_not_converted(
    zoo: Zoo, capsys: pytest.CaptureFixture[str]
) -> None:
    unbuildable = CATALOG[UNBUILDABLE]
    assert shipped_config(unbuildable) is None
    config = shipped_config(CATALOG[KEYPOINTS])
    assert config is not None
    deepmac = config.read_text().replace(
        "keypoint_label_map_path", "deepmac_mask_estimation {\n      dim: 8\n    }\n"
        "    keypoint_label_map_path", 1)
    zoo.state.files[zoo.path_of(unbuildable)] = make_tarball(UNBUILDABLE, deepmac)
    status, out, err = _objdet(capsys, "show", UNBUILDABLE)
    assert status == 0 and "builds:    unknown until downloaded" in out
    status, out, err = _objdet(capsys, "download", UNBUILDABLE)
    assert status == 0 and "downloaded" in out
    assert err.startswith(f"objdet zoo download: warning: not converted: objdet cannot build "
                          f"{UNBUILDABLE} yet: model.center_net.deepmac_mask_estimation")
    assert (zoo.cache.model_dir(UNBUILDABLE) / "checkpoint" / "ckpt-0.index").is_file()
    assert not zoo.cache.converted_dir(UNBUILDABLE).exists()
    status, out, _ = _objdet(capsys, "show", UNBUILDABLE)
    assert "conversion skipped: model.center_net.deepmac_mask_estimation" in out


def test_a_keypoint_model_builds_with_the_coco_keypoint_label_map(
    zoo: Zoo, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = _objdet(capsys, "show", KEYPOINTS)
    assert status == 0 and "builds:    yes" in out


def test_a_wrong_sha256_given_to_download_is_one_line_and_caches_nothing(
    zoo: Zoo, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = _objdet(capsys, "download", NAME, "--sha256", "ab" * 32)
    assert status == 2 and err.count("\n") == 1 and f"expected {'ab' * 32} (pinned)" in err
    assert zoo.cache.record(NAME) is None and not zoo.cache.model_dir(NAME).exists()
    assert not zoo.cache.partial_path(NAME).exists()
