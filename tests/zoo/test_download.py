"""Downloads from a real HTTP server on 127.0.0.1: a good one (then converted for the
Predictor), a transfer cut short (resumed with Range), an interrupted download resumed by
the next run, a wrong hash, a corrupt tarball, and the checks of a cached model."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np
import pytest
from zoo_mirror import NAME, REFERENCE, Zoo, make_tarball

import objdet.config
from objdet import zoo as zoo_api
from objdet.errors import DataError, ObjdetError
from objdet.zoo.download import ensure_cached


def _nothing_cached(zoo: Zoo) -> bool:
    return (not zoo.cache.model_dir(NAME).exists() and not zoo.cache.registry_path.exists()
            and zoo.cache.record(NAME) is None)


def test_a_download_is_verified_extracted_recorded_and_converted_for_the_predictor(
    zoo: Zoo, tarball: bytes
) -> None:
    from objdet.inference.predictor import Predictor

    result = zoo_api.download(NAME)
    cached, conversion = result.cached, result.conversion
    assert cached.downloaded and [r.range for r in zoo.state.requests] == [None]
    assert cached.record.sha256 == hashlib.sha256(tarball).hexdigest() and not cached.record.pinned
    assert cached.checkpoint_prefix == zoo.cache.model_dir(NAME) / "checkpoint" / "ckpt-0"
    assert cached.checkpoint_prefix.with_suffix(".index").read_bytes() == (
        REFERENCE / "checkpoint" / "ckpt-0.index").read_bytes()
    assert set(cached.record.files) == {"pipeline.config", "checkpoint/checkpoint",
                                        "checkpoint/ckpt-0.index",
                                        "checkpoint/ckpt-0.data-00000-of-00001"}
    assert not (cached.directory / "saved_model").exists()  # objdet reads the checkpoint only
    assert not zoo.cache.partial_path(NAME).exists()
    registry = json.loads(zoo.cache.registry_path.read_text())
    assert registry["models"][NAME]["conversion"] == "converted"

    assert conversion is not None and conversion.directory == zoo.cache.converted_dir(NAME)
    config = objdet.config.load(conversion.directory / "pipeline.config")
    assert config.eval_input_reader[0].label_map_path == str(zoo.cache.label_map_path)
    predictor = Predictor.from_checkpoint(conversion.directory / "pipeline.config",
                                          conversion.directory)
    image = np.load(REFERENCE / "reference.npz")["image_0"]
    assert len(predictor.detect(image, min_score=0.01).scores) > 0
    assert predictor.label_map is not None and predictor.label_map.max_id == 90

    again = zoo_api.download(NAME)  # from the cache: no request, files checked
    assert not again.cached.downloaded and len(zoo.state.requests) == 1
    assert again.conversion == conversion


def test_a_transfer_cut_short_is_resumed_with_range(zoo: Zoo, tarball: bytes) -> None:
    zoo.state.truncate_after = [100_000]
    cached = ensure_cached(zoo.model)
    seen = [(r.range, r.status) for r in zoo.state.requests]
    assert seen == [(None, 200), ("bytes=100000-", 206)]
    assert cached.record.sha256 == hashlib.sha256(tarball).hexdigest()


def test_an_interrupted_download_leaves_no_entry_and_the_next_run_resumes_it(
    zoo: Zoo, tarball: bytes
) -> None:
    zoo.state.truncate_after = [1000, 1000, 1000]  # every attempt of the first run cut short
    with pytest.raises(DataError) as failed:
        ensure_cached(zoo.model)
    assert "stopped at byte 3000" in str(failed.value) and "resume" in str(failed.value)
    assert "\n" not in str(failed.value)
    assert _nothing_cached(zoo) and zoo.cache.partial_path(NAME).stat().st_size == 3000

    cached = ensure_cached(zoo.model)
    assert zoo.state.requests[-1].range == "bytes=3000-" and zoo.state.requests[-1].status == 206
    assert cached.record.sha256 == hashlib.sha256(tarball).hexdigest()
    assert not zoo.cache.partial_path(NAME).exists()


def test_a_server_without_range_support_sends_the_whole_file_again(
    zoo: Zoo, tarball: bytes
) -> None:
    partial = zoo.cache.partial_path(NAME)
    partial.parent.mkdir(parents=True)
    partial.write_bytes(tarball[:5000])
    zoo.state.ignore_range = True
    cached = ensure_cached(zoo.model)
    assert [(r.range, r.status) for r in zoo.state.requests] == [("bytes=5000-", 200)]
    assert cached.record.sha256 == hashlib.sha256(tarball).hexdigest()


def test_a_wrong_pinned_sha256_is_one_line_and_leaves_nothing(zoo: Zoo, tarball: bytes) -> None:
    pinned = dataclasses.replace(zoo.model, sha256="0" * 64)
    with pytest.raises(DataError) as failed:
        ensure_cached(pinned)
    message = str(failed.value)
    assert "\n" not in message and NAME in message and "0" * 64 in message
    assert hashlib.sha256(tarball).hexdigest() in message and "pinned" in message
    assert _nothing_cached(zoo) and not zoo.cache.partial_path(NAME).exists()


def test_the_hash_recorded_at_the_first_download_is_checked_on_the_next(zoo: Zoo) -> None:
    first = ensure_cached(zoo.model)
    zoo.state.files[zoo.path_of(zoo.model)] = make_tarball(NAME, mtime=1)  # another file
    with pytest.raises(DataError, match="recorded at the first download"):
        ensure_cached(zoo.model, force=True)
    assert zoo.cache.record(NAME) == first.record  # the cached model is untouched
    ensure_cached(zoo.model)


def test_cached_files_are_verified_on_every_load(zoo: Zoo) -> None:
    cached = ensure_cached(zoo.model)
    data = cached.directory / "checkpoint" / "ckpt-0.data-00000-of-00001"
    corrupt = bytearray(data.read_bytes())
    corrupt[100] ^= 0xFF
    data.write_bytes(bytes(corrupt))
    with pytest.raises(DataError, match=r"ckpt-0\.data-00000-of-00001: sha256 .* --force"):
        zoo_api.resolve_checkpoint(f"zoo:{NAME}")
    repaired = ensure_cached(zoo.model, force=True)  # the recorded hash still matches
    assert repaired.downloaded and zoo_api.resolve_checkpoint(f"zoo:{NAME}").is_relative_to(
        zoo.cache.root)


def test_a_tarball_that_is_not_whole_leaves_nothing(zoo: Zoo, tarball: bytes) -> None:
    zoo.state.files[zoo.path_of(zoo.model)] = tarball[:-20]  # served whole, the gzip cut
    with pytest.raises(DataError, match="not a complete .tar.gz"):
        ensure_cached(zoo.model)
    assert _nothing_cached(zoo) and not zoo.cache.partial_path(NAME).exists()


def test_a_checkpoint_that_does_not_fit_its_config_fails_conversion_and_keeps_the_download(
    zoo: Zoo
) -> None:
    config = (REFERENCE / "pipeline.config").read_text().replace("num_classes: 2", "num_classes: 3")
    zoo.state.files[zoo.path_of(zoo.model)] = make_tarball(NAME, config)
    with pytest.raises(ObjdetError) as failed:
        zoo_api.download(NAME)
    message = str(failed.value)
    assert message.startswith(f"zoo model {NAME}: converting it failed (the download stays in ")
    assert "\n" not in message
    assert zoo.cache.record(NAME) is not None and not zoo.cache.converted_dir(NAME).exists()
