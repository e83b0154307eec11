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
    (["--model_name", "m", "--model_base_path", "x", "--file_system_poll_wait_seconds", "-1"],
     "--file_system_poll_wait_seconds: must be >= 0"),
    (["--model_base_path", "x", "--use_alts_credentials"],
     "--use_alts_credentials=True: not supported by objdet serve: Google ALTS"),
    (["--model_base_path", "x", "--enable_profiler=true", "--num_load_threads=4"],
     "--num_load_threads=4: not supported"),
    (["--model_base_path", "x", "--saved_model_tags=serve,tpu"], "tagged serve"),
    (["--model_base_path", "x", "--tensorflow_session_parallelism=2",
      "--tensorflow_intra_op_parallelism=2", "--tensorflow_inter_op_parallelism=1"], "not all three"),
    (["--model_base_path", "x", "--grpc_channel_arguments=grpc.a=1,oops"], "'oops' is not key=value"),
    (["--model_base_path", "x", "--monitoring_config_file", "CONFIG"],
     'MonitoringConfig" has no field named "model_config_list"'),
])
def test_serve_flag_errors_are_one_line(tmp_path, capsys, flags: list[str], words: str) -> None:  # type: ignore[no-untyped-def]
    from objdet.cli.main import main

    config = tmp_path / "models.config"
    config.write_text('model_config_list { config { name: "m" base_path: "/x" bogus: 1 } }')
    assert main(["serve", *[str(config) if flag == "CONFIG" else flag for flag in flags]]) == 2
    error = capsys.readouterr().err
    assert error.startswith("objdet serve: error:") and words in error, error
    assert len(error.strip().splitlines()) == 1


# Every flag of TF Serving's model_servers/main.cc (2.x), with a value of its type.
TF_SERVING_FLAGS = {
    "port": "0", "grpc_socket_path": "", "rest_api_port": "0", "rest_api_num_threads": "2",
    "rest_api_timeout_in_ms": "500", "rest_api_enable_cors_support": "true",
    "enable_batching": "false", "allow_version_labels_for_unavailable_models": "true",
    "batching_parameters_file": "", "enable_per_model_batching_parameters": "false",
    "model_config_file": "", "model_config_file_poll_wait_seconds": "5", "model_name": "m",
    "model_base_path": "/models/m", "num_load_threads": "0", "num_unload_threads": "0",
    "max_num_load_retries": "2", "load_retry_interval_micros": "250000",
    "file_system_poll_wait_seconds": "0", "flush_filesystem_caches": "false",
    "tensorflow_session_parallelism": "0", "tensorflow_session_config_file": "",
    "tensorflow_intra_op_parallelism": "3", "tensorflow_inter_op_parallelism": "2",
    "use_alts_credentials": "false", "ssl_config_file": "", "platform_config_file": "",
    "per_process_gpu_memory_fraction": "0.5", "saved_model_tags": "serve",
    "grpc_channel_arguments": "grpc.max_connection_age_ms=2000,grpc.lb=x",
    "grpc_max_threads": "5", "enable_model_warmup": "false",
    "num_request_iterations_for_warmup": "3", "monitoring_config_file": "",
    "remove_unused_fields_from_bundle_metagraph": "true", "prefer_tflite_model": "false",
    "num_tflite_pools": "1", "num_tflite_interpreters_per_pool": "1",
    "enable_signature_method_name_check": "1", "xla_cpu_compilation_enabled": "false",
    "xla_gpu_compilation_enabled": "false", "enable_profiler": "true",
    "thread_pool_factory_config_file": "", "mixed_precision": "",
    "skip_initialize_tpu": "false", "enable_grpc_healthcheck_service": "false",
    "enable_serialization_as_tensor_content": "false",
}


def _parsed(flags: list[str]):  # type: ignore[no-untyped-def]
    import argparse

    from objdet.serving.flags import add_flags

    parser = argparse.ArgumentParser()
    add_flags(parser)
    return parser.parse_args(flags)


def test_every_tf_serving_flag_parses_and_maps_onto_the_options(caplog) -> None:  # type: ignore[no-untyped-def]
    from objdet.serving.flags import options_from_flags

    args = _parsed([f"--{name}={value}" for name, value in TF_SERVING_FLAGS.items()])
    configs, options = options_from_flags(args)
    assert [(config.name, config.base_path) for config in configs] == [("m", "/models/m")]
    assert (options.rest_api_num_threads, options.rest_api_timeout_seconds, options.cors) == (
        2, 0.5, True)
    assert options.grpc_channel_arguments == (("grpc.max_connection_age_ms", 2000), ("grpc.lb", "x"))
    assert (options.grpc_max_threads, options.intra_op_threads, options.inter_op_threads) == (5, 3, 2)
    assert options.warmup_iterations == 0 and options.batching is None  # warm-up off
    assert (options.max_load_retries, options.load_retry_seconds) == (2, 0.25)
    assert options.method_name_check and options.allow_labels_for_unavailable_versions
    assert options.file_system_poll_wait_seconds == 0
    assert options.prometheus_path == "/monitoring/prometheus/metrics"  # objdet's default
    # the ignored ones are logged, each with its reason
    assert "--per_process_gpu_memory_fraction=0.5 ignored: objdet serve runs on the CPU" in caplog.text
    assert "--flush_filesystem_caches=False ignored" in caplog.text

    # bare booleans, TF Serving's session parallelism, warm-up iterations, default name
    args = _parsed(["--model_base_path", "/m", "--enable_batching", "--tensorflow_session_parallelism",
                    "4", "--num_request_iterations_for_warmup", "3"])
    configs, options = options_from_flags(args)
    assert configs[0].name == "default" and options.batching is not None
    assert (options.intra_op_threads, options.inter_op_threads, options.warmup_iterations) == (4, 4, 3)
    assert options.rest_api_timeout_seconds == 30 and not options.cors  # TF Serving's defaults


def test_monitoring_config_and_version(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    from objdet.cli.main import main
    from objdet.serving.model_config import read_monitoring_config

    path = tmp_path / "monitoring.config"
    path.write_text('prometheus_config { enable: true path: "/metrics" }')
    assert read_monitoring_config(path) == "/metrics"
    path.write_text("prometheus_config { enable: true }")
    assert read_monitoring_config(path) == "/monitoring/prometheus/metrics"
    path.write_text('prometheus_config { path: "/metrics" }')
    assert read_monitoring_config(path) is None  # not enabled: no metrics page
    assert main(["serve", "--version"]) == 0
    assert capsys.readouterr().out.startswith("TensorFlow ModelServer: objdet ")


def test_labels_for_unavailable_versions_only_when_allowed_and_new() -> None:
    from objdet.serving.config_reload import ModelServerConfig, checked_model_configs
    from objdet.serving.errors import ServingError
    from objdet.serving.model_config import ModelConfig

    current = ModelConfig(name="m", base_path="/m", model_platform="tensorflow")
    current.version_labels["stable"] = 1
    config = ModelServerConfig()
    model = config.model_config_list.config.add(name="m", base_path="/m",
                                                model_platform="tensorflow")
    model.version_labels["stable"] = 1
    model.version_labels["canary"] = 2  # version 2 is not loaded yet
    with pytest.raises(ServingError, match="assign label to version 2 of model m"):
        checked_model_configs(config, {"m": current}, {"m": {1}})
    [checked] = checked_model_configs(config, {"m": current}, {"m": {1}},
                                      allow_labels_for_unavailable_versions=True)
    assert dict(checked.version_labels) == {"stable": 1, "canary": 2}
    model.version_labels["stable"] = 3  # moving a label clients use: still refused
    with pytest.raises(ServingError, match="assign label to version 3 of model m"):
        checked_model_configs(config, {"m": current}, {"m": {1}},
                              allow_labels_for_unavailable_versions=True)
