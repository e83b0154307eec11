"""TF Serving flags whose effect is timing or model loading, checked in-process (a server
subprocess for each would cost seconds): --rest_api_timeout_in_ms, --max_num_load_retries /
--load_retry_interval_micros, --model_config_file_poll_wait_seconds and
--enable_signature_method_name_check, on a real ModelManager loading the tiny export."""

from __future__ import annotations

import asyncio
import re
import shutil
import threading
import time
from pathlib import Path

import pytest
import torch

from objdet.serving.classify_regress import classify, regress
from objdet.serving.errors import Code, ServingError
from objdet.serving.manager import ModelManager
from objdet.serving.metrics import Metrics
from objdet.serving.model_config import read_model_config_file
from objdet.serving.protos import model_pb2
from objdet.serving.protos.classification_pb2 import ClassificationRequest
from objdet.serving.protos.regression_pb2 import RegressionRequest
from objdet.serving.rest import _Workers
from objdet.serving.server import ConfigFilePoller
from objdet.serving.service import ServingCore, Target


def test_rest_deadline_answers_deadline_exceeded() -> None:
    workers = _Workers(threads=2, timeout_seconds=0.3)  # room for a thread to start under load

    async def requests() -> tuple[str, ServingError]:
        fast = await workers.run(lambda: "done", deadline=True)
        with pytest.raises(ServingError) as slow:
            await workers.run(time.sleep, 2.0, deadline=True)
        return fast, slow.value

    started = time.monotonic()
    fast, error = asyncio.run(requests())
    assert fast == "done" and error.code == Code.DEADLINE_EXCEEDED and error.http_status == 504
    assert "--rest_api_timeout_in_ms 300" in error.message
    assert time.monotonic() - started < 1.8  # answered at the deadline, not after the work
    assert asyncio.run(_Workers(2, 0.3).run(lambda: "no deadline")) == "no deadline"


def test_load_retries_and_config_file_polling(exported, tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    source = exported("encoded_image_string_tensor")
    # a version still being copied: its signature.json arrives after the first load failed
    shutil.copytree(source, tmp_path / "a" / "1", ignore=shutil.ignore_patterns("signature.json"))
    config_path = tmp_path / "models.config"
    config_path.write_text(f'model_config_list {{ config {{ name: "a" base_path: '
                           f'"{tmp_path / "a"}" model_platform: "tensorflow" }} }}')
    manager = ModelManager(read_model_config_file(config_path), poll_seconds=0,
                           max_load_retries=2, load_retry_seconds=0.2)
    copy = threading.Timer(0.1, shutil.copy, (source / "signature.json", tmp_path / "a" / "1"))
    copy.start()
    manager.start()  # poll_seconds 0: loads once, no polling thread
    copy.join()
    assert [(s.version, s.state) for s in manager.statuses("a")] == [(1, "AVAILABLE")]
    assert "a version 1 failed to load" in caplog.text  # the first try, before the copy ended

    poller = ConfigFilePoller(str(config_path), 60, manager)
    poller.poll_once()  # unchanged: nothing to do
    assert manager.model_names() == ["a"]
    shutil.copytree(source, tmp_path / "b" / "1")
    config_path.write_text(config_path.read_text().replace(
        "} }", f'}} config {{ name: "b" base_path: "{tmp_path / "b"}" '
        'model_platform: "tensorflow" } }'))
    poller.poll_once()
    assert manager.model_names() == ["a", "b"] and manager.ready()
    config_path.write_text("model_config_list { config { name: ")  # half-written: logged, kept
    poller.poll_once()
    assert manager.model_names() == ["a", "b"]
    assert "Failed to read ModelServerConfig file" in caplog.text

    # --enable_signature_method_name_check: Classify / Regress refuse a predict signature by
    # its method_name (before its shape), Predict runs
    core = ServingCore(manager, Metrics(), method_name_check=True)
    spec = model_pb2.ModelSpec(name="a")
    with pytest.raises(ServingError, match=re.escape(
            "Expected classification signature method_name to be tensorflow/serving/classify. "
            "Was: tensorflow/serving/predict")):
        classify(core, ClassificationRequest(model_spec=spec), "GRPC")
    with pytest.raises(ServingError, match="Expected regression signature method_name to be"):
        regress(core, RegressionRequest(model_spec=spec), "GRPC")
    image = torch.full((3, 32, 32), 128, dtype=torch.uint8)
    assert core.predict(Target("a"), lambda signature: [image], "GRPC").version == 1
    with pytest.raises(ServingError, match="Expected one or two output Tensors, found 4"):
        classify(ServingCore(manager, Metrics()), ClassificationRequest(model_spec=spec), "GRPC")
    manager.stop()
