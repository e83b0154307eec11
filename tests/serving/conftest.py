"""Fixtures of the serving tests: a model base path of real exports and one shared server.

The shared server serves two models from a --model_config_file: ``detector`` (the tiny
model exported with encoded_image_string_tensor, with model.onnx: served by ONNX Runtime;
version 1, plus a non-numeric folder that must be ignored) and ``pixels`` (image_tensor
exported without ONNX: served by the torch program; versions 1 and 2 under the ``all``
policy, labels stable -> 1 and canary -> 2).
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from server_process import ServerProcess
from serving_inputs import MAX_REQUEST_BYTES


@pytest.fixture(scope="session")
def pixels_export(tiny_training, tmp_path_factory: pytest.TempPathFactory) -> Path:  # type: ignore[no-untyped-def]
    """The tiny model exported with input_type image_tensor and no model.onnx."""
    from objdet.export.exporter import export_inference_graph

    output = tmp_path_factory.mktemp("pixels_export") / "exported"
    export_inference_graph(pipeline_config_path=tiny_training.config_path,
                           trained_checkpoint_dir=tiny_training.checkpoint_dir,
                           output_directory=output, input_type="image_tensor", formats=["pt2"])
    return output


@pytest.fixture(scope="session")
def pixels_predictor(pixels_export: Path):  # type: ignore[no-untyped-def]
    from objdet.inference.predictor import Predictor

    return Predictor.from_export(pixels_export)


@pytest.fixture(scope="session")
def model_root(pixels_export: Path, exported, tmp_path_factory: pytest.TempPathFactory) -> Path:  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("models")
    shutil.copytree(exported("encoded_image_string_tensor"), root / "detector" / "1")
    (root / "detector" / "not-a-version").mkdir()
    (root / "detector" / "not-a-version" / "junk.txt").write_text("ignored")
    shutil.copytree(pixels_export, root / "pixels" / "1")
    shutil.copytree(pixels_export, root / "pixels" / "2")
    (root / "models.config").write_text(f"""
model_config_list {{
  config {{ name: "detector" base_path: "{root / 'detector'}" model_platform: "tensorflow" }}
  config {{
    name: "pixels" base_path: "{root / 'pixels'}" model_platform: "tensorflow"
    model_version_policy {{ all {{}} }}
    version_labels {{ key: "stable" value: 1 }}
    version_labels {{ key: "canary" value: 2 }}
  }}
}}
""")
    return root


@pytest.fixture(scope="session")
def server(model_root: Path) -> Iterator[ServerProcess]:
    """Also started with TF Serving flags the tests check (CORS, a monitoring config at TF
    Serving's default path, a gRPC UNIX socket, thread counts) and ones that must merely be
    accepted (ignored on a CPU, or given TF Serving's default)."""
    (model_root / "monitoring.config").write_text("prometheus_config { enable: true }\n")
    process = ServerProcess(["--model_config_file", str(model_root / "models.config"),
                             # labels at startup name versions not loaded yet (as TF Serving)
                             "--allow_version_labels_for_unavailable_models",
                             "--max_request_bytes", str(MAX_REQUEST_BYTES),
                             "--rest_api_enable_cors_support",
                             "--monitoring_config_file", str(model_root / "monitoring.config"),
                             f"--grpc_socket_path={model_root / 'grpc.sock'}",
                             "--grpc_max_threads=8", "--rest_api_num_threads=8",
                             "--grpc_channel_arguments=grpc.max_connection_age_ms=600000",
                             "--tensorflow_intra_op_parallelism=1",
                             "--per_process_gpu_memory_fraction=0.5", "--enable_profiler=true",
                             "--saved_model_tags=serve"],
                            model_root / "server.log")
    yield process
    code = process.stop()
    assert code == 0, f"objdet serve exited {code} after SIGTERM:\n{process.log()}"
