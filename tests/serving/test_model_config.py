"""--model_config_file / --batching_parameters_file parsing and the version policies."""

from __future__ import annotations

import re

import pytest

from objdet.errors import ConfigError
from objdet.serving.model_config import (
    BatchingOptions,
    VersionPolicy,
    read_batching_parameters,
    read_model_config_file,
    versions_to_serve,
)


def test_model_config_list(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "models.config"
    path.write_text("""
model_config_list {
  config { name: "a" base_path: "rel/a" model_platform: "tensorflow"
           model_version_policy { specific { versions: 1 versions: 3 } }
           version_labels { key: "stable" value: 1 } }
  config { name: "b" base_path: "/models/b" }
}""")
    first, second = read_model_config_file(path)
    assert first.name == "a" and first.base_path.endswith("/rel/a") and first.base_path.startswith("/")
    assert dict(first.version_labels) == {"stable": 1}
    assert list(first.model_version_policy.specific.versions) == [1, 3]
    assert second.base_path == "/models/b"


@pytest.mark.parametrize(("text", "words"), [
    ('model_config_list { config { name: "a" } }', "base_path"),
    ('model_config_list { config { name: "a" base_path: "/a" } config { name: "a" base_path: "/b" } }',
     "twice"),
    ('model_config_list { config { name: "a" base_path: "/a" model_platform: "pytorch" } }',
     "model_platform"),
    ('model_config_list { config { nme: "a" } }', "nme"),
    ("", "model_config_list"),
])
def test_bad_model_config_names_the_problem(tmp_path, text: str, words: str) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "models.config"
    path.write_text(text)
    with pytest.raises(ConfigError, match=words) as raised:
        read_model_config_file(path)
    assert str(path) in str(raised.value)


def test_version_policies() -> None:
    available = [3, 1, 10, 2]
    assert versions_to_serve(VersionPolicy(), available) == [10]
    latest = VersionPolicy()
    latest.latest.num_versions = 2
    assert versions_to_serve(latest, available) == [3, 10]
    every = VersionPolicy()
    every.all.SetInParent()
    assert versions_to_serve(every, available) == [1, 2, 3, 10]
    specific = VersionPolicy()
    specific.specific.versions.extend([2, 7])
    assert versions_to_serve(specific, available) == [2]
    assert versions_to_serve(VersionPolicy(), []) == []


def test_batching_parameters(tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert read_batching_parameters(None) == BatchingOptions()
    path = tmp_path / "batching.config"
    path.write_text("max_batch_size { value: 16 }\nbatch_timeout_micros { value: 5000 }\n"
                    "num_batch_threads { value: 2 }\nmax_enqueued_batches { value: 9 }\n")
    assert read_batching_parameters(path) == BatchingOptions(16, 5000, 2, 9)
    path.write_text("max_batch_size { value: 0 }\n")
    with pytest.raises(ConfigError, match="max_batch_size: must be >= 1"):
        read_batching_parameters(path)
    path.write_text("max_batch_size { value: 8 }\nallowed_batch_sizes: [2, 4, 8]\n")
    options = read_batching_parameters(path)
    assert options.allowed_batch_sizes == (2, 4, 8)
    assert [options.padded_size(n) for n in (1, 2, 3, 5, 8, 9)] == [2, 2, 4, 8, 8, 9]
    assert BatchingOptions().padded_size(3) == 3
    for text, words in (("max_batch_size { value: 8 }\nallowed_batch_sizes: [2, 4]\n",
                         "last entry must equal max_batch_size (8), got 4"),
                        ("max_batch_size { value: 8 }\nallowed_batch_sizes: [4, 2, 8]\n",
                         "strictly increasing, got [4, 2, 8]"),
                        ("thread_pool_name { value: 'shared' }\n", "thread_pool_name")):
        path.write_text(text)
        with pytest.raises(ConfigError, match=re.escape(f"{path}: ") + ".*" + re.escape(words)):
            read_batching_parameters(path)


@pytest.mark.parametrize(("flags", "words"), [
    (["--model_name", "m"], "--model_base_path"),
    (["--model_config_file", "CONFIG", "--model_name", "m"], "not both"),
    (["--model_config_file", "CONFIG"], "bogus"),
    (["--model_name", "m", "--model_base_path", "x", "--file_system_poll_wait_seconds", "0"],
     "poll"),
])
def test_serve_flag_errors_are_one_line(tmp_path, capsys, flags: list[str], words: str) -> None:  # type: ignore[no-untyped-def]
    from objdet.cli.main import main

    config = tmp_path / "models.config"
    config.write_text('model_config_list { config { name: "m" base_path: "/x" bogus: 1 } }')
    assert main(["serve", *[str(config) if flag == "CONFIG" else flag for flag in flags]]) == 2
    error = capsys.readouterr().err
    assert error.startswith("objdet serve: error:") and words in error, error
    assert len(error.strip().splitlines()) == 1
