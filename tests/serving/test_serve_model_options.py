"""Model options TF Serving reads at startup and load time, checked in-process: version labels
in the startup --model_config_file (refused without --allow_version_labels_for_unavailable_models,
as TF Serving checks labels before it loads anything) and --enable_per_model_batching_parameters
(a version directory's batching_params.pbtxt)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from objdet.errors import ConfigError
from objdet.serving.errors import Code
from objdet.serving.manager import ModelManager
from objdet.serving.model_config import BatchingOptions, single_model_config

LABELLED = """model_config_list {
  config { name: "m" base_path: "/models/m" model_platform: "tensorflow"
           version_labels { key: "stable" value: 1 } }
}"""


def test_startup_labels_need_allow_version_labels_for_unavailable_models(tmp_path: Path,  # type: ignore[no-untyped-def]
                                                                         capsys) -> None:
    from objdet.cli.main import main
    from objdet.serving.flags import add_flags, options_from_flags

    path = tmp_path / "models.config"
    path.write_text(LABELLED)
    # no ports: were the labels taken, the server would refuse to start, not serve forever
    assert main(["serve", "--model_config_file", str(path), "--port=0", "--rest_api_port=0"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"objdet serve: error: {path}: version_labels: Request to assign "
                            "label to version 1 of model m, which is not currently available "
                            "for inference (no version is loaded at startup: give "
                            "--allow_version_labels_for_unavailable_models"), error
    assert len(error.splitlines()) == 1

    import argparse

    parser = argparse.ArgumentParser()
    add_flags(parser)
    args = parser.parse_args(["--model_config_file", str(path),
                              "--allow_version_labels_for_unavailable_models"])
    [config], options = options_from_flags(args)
    assert dict(config.version_labels) == {"stable": 1}
    assert options.allow_labels_for_unavailable_versions
    path.write_text(LABELLED.replace('version_labels { key: "stable" value: 1 }', ""))
    assert options_from_flags(parser.parse_args(["--model_config_file", str(path)]))


def test_a_label_may_stay_on_its_unavailable_version_when_allowed() -> None:
    """TF Serving's UpdateModelVersionLabelMap with the flag: a new label, or one that keeps
    its version, may name a version that is not available; moving one may not."""
    from objdet.serving.config_reload import check_version_labels
    from objdet.serving.errors import ServingError

    current = single_model_config("m", "/m")
    current.version_labels["stable"] = 2
    wanted = single_model_config("m", "/m")
    wanted.version_labels.update({"stable": 2, "canary": 3})
    check_version_labels([wanted], {"m": current}, {"m": {1}},
                         allow_labels_for_unavailable_versions=True)
    wanted.version_labels["stable"] = 4
    with pytest.raises(ServingError, match="assign label to version 4 of model m"):
        check_version_labels([wanted], {"m": current}, {"m": {1}},
                             allow_labels_for_unavailable_versions=True)


def _version(base: Path, export: Path, batching_params: str | None) -> None:
    """Version 1 under ``base``: the export's files (linked), plus its own batching params."""
    directory = base / "1"
    directory.mkdir(parents=True)
    for file in export.iterdir():
        (directory / file.name).symlink_to(file)
    if batching_params is not None:
        (directory / "batching_params.pbtxt").write_text(batching_params)


def test_per_model_batching_parameters(exported, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """As TF Serving's GetPerModelBatchingParams: a version with batching_params.pbtxt is
    batched as it says (but for num_batch_threads, from the global file), one without is not
    batched, one whose file does not parse fails to load naming it; without the flag every
    model takes the global parameters."""
    import functools

    from objdet.serving.servable import load_servable

    export = exported("encoded_image_string_tensor")
    _version(tmp_path / "own", export, "max_batch_size { value: 2 }\n"
             "batch_timeout_micros { value: 0 }\nnum_batch_threads { value: 3 }\n"
             "allowed_batch_sizes: [1, 2]\n")
    _version(tmp_path / "none", export, None)
    _version(tmp_path / "bad", export, "max_batch_size { value: 0 }\n")
    global_options = BatchingOptions(max_batch_size=8, batch_timeout_micros=5000,
                                     num_batch_threads=1)
    configs = [single_model_config(name, tmp_path / name) for name in ("own", "none", "bad")]
    manager = ModelManager(configs, poll_seconds=0, batching=global_options,
                           per_model_batching=True,
                           loader=functools.partial(load_servable, warmup_iterations=0))
    manager.start()
    try:
        own = manager.resolve("own")
        assert own.batcher is not None and own.batcher.options == BatchingOptions(
            max_batch_size=2, batch_timeout_micros=0, num_batch_threads=1,
            max_enqueued_batches=100, allowed_batch_sizes=(1, 2))
        image = torch.full((3, 24, 32), 128, dtype=torch.uint8)
        assert len(own.predict([image, image, image])) == 3  # batches of at most 2
        [status] = manager.statuses("bad")
        assert (status.state, status.error_code) == ("END", Code.UNKNOWN)
        assert re.fullmatch(rf"{re.escape(str(tmp_path / 'bad' / '1' / 'batching_params.pbtxt'))}"
                            r": max_batch_size: must be >= 1, got 0", status.error_message)
        assert manager.resolve("none").batcher is None  # no file: not batched
    finally:
        manager.stop()
    with pytest.raises(ConfigError, match="batching_params.pbtxt: max_batch_size"):
        manager.batching_for(tmp_path / "bad" / "1")
    manager.per_model_batching = False
    assert manager.batching_for(tmp_path / "own" / "1") == global_options
