"""Dynamic batching: concurrent requests' images run together and answer as one at a time;
a full queue is refused with 429 / RESOURCE_EXHAUSTED; SIGTERM lets a request waiting in the
batch queue finish before the server exits 0."""

from __future__ import annotations

import base64
import shutil
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from server_process import ServerProcess
from serving_inputs import jpeg_bytes, png_of

IMAGES = [png_of(jpeg_bytes(f"raccoon-{index}.jpg"), (64, 48)) for index in range(1, 7)]


def body(images: list[bytes]) -> dict[str, object]:
    return {"instances": [{"b64": base64.b64encode(data).decode()} for data in images]}


@pytest.fixture(scope="module")
def batching_server(exported, tmp_path_factory):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("batching")
    shutil.copytree(exported("encoded_image_string_tensor"), root / "m" / "1")
    parameters = root / "batching.config"
    # a 1 s timeout: the last, partial batch waits long enough to send SIGTERM meanwhile
    parameters.write_text("max_batch_size { value: 4 }\nbatch_timeout_micros { value: 1000000 }\n"
                          "num_batch_threads { value: 1 }\nmax_enqueued_batches { value: 2 }\n")
    server = ServerProcess(["--model_name", "m", "--model_base_path", str(root / "m"),
                            "--enable_batching", "--batching_parameters_file", str(parameters)],
                           root / "server.log")
    yield server
    server.stop(signal.SIGKILL)  # stopped by test_sigterm_... unless an earlier test failed


def test_concurrent_requests_are_batched_with_the_same_answers(batching_server, predictor_for) -> None:  # type: ignore[no-untyped-def]
    from objdet.inference.inputs import decode_image_bytes

    predictor = predictor_for("encoded_image_string_tensor")
    with ThreadPoolExecutor(len(IMAGES)) as pool:
        answers = list(pool.map(lambda data: batching_server.post_json("/v1/models/m:predict",
                                                                       body([data])), IMAGES))
    for (status, answer), data in zip(answers, IMAGES):
        assert status == 200, answer
        reference = predictor.predict_pixels(decode_image_bytes(data)).to_outputs(20)
        np.testing.assert_allclose(answer["predictions"][0]["detection_scores"],
                                   reference["detection_scores"][0], atol=1e-4)
    _, metrics = batching_server.request("GET", "/monitoring/prometheus/metrics")
    values = {line.split("{")[0]: float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
              if line.startswith(":tensorflow:serving:batch_size_")}
    assert values[":tensorflow:serving:batch_size_sum"] == len(IMAGES)  # every image, once
    assert values[":tensorflow:serving:batch_size_count"] < len(IMAGES)  # in fewer model calls


def test_more_images_than_the_queue_holds_is_429(batching_server) -> None:  # type: ignore[no-untyped-def]
    status, answer = batching_server.post_json("/v1/models/m:predict", body(IMAGES * 2))  # 12 > 2*4
    assert status == 429 and "queue" in answer["error"]
    status, _ = batching_server.post_json("/v1/models/m:predict", body(IMAGES[:1]))
    assert status == 200


def test_sigterm_lets_in_flight_requests_finish(batching_server) -> None:  # type: ignore[no-untyped-def]
    answers: list[tuple[int, object]] = []
    thread = threading.Thread(target=lambda: answers.append(
        batching_server.post_json("/v1/models/m:predict", body(IMAGES[:1]))))
    start = time.monotonic()
    thread.start()
    time.sleep(0.4)  # the request now waits in the batch queue (1 s timeout, batch not full)
    code = batching_server.stop(signal.SIGTERM)
    thread.join()
    assert code == 0, batching_server.log()
    assert answers and answers[0][0] == 200, answers
    assert time.monotonic() - start >= 0.9  # it was in flight when the signal came


def test_batches_are_padded_to_the_allowed_sizes(exported) -> None:  # type: ignore[no-untyped-def]
    """allowed_batch_sizes [2, 4]: 3 concurrent images (sent within the 2 s timeout, which a
    batch of 3 waits out) run as one call of 4 (the last image repeated), a lone image as a
    call of 2; each request gets only its own answers, equal to the unbatched ones."""
    from objdet.inference.inputs import decode_image_bytes
    from objdet.serving.batching import Batcher
    from objdet.serving.model_config import BatchingOptions
    from objdet.serving.servable import load_servable

    servable = load_servable(exported("encoded_image_string_tensor"), 1)
    calls: list[int] = []
    predict = servable.predict
    servable.predict = lambda images: calls.append(len(images)) or predict(images)  # type: ignore[method-assign]
    options = BatchingOptions(max_batch_size=4, batch_timeout_micros=2_000_000, num_batch_threads=1,
                              allowed_batch_sizes=(2, 4))
    batcher = Batcher(servable, options)
    images = [decode_image_bytes(data) for data in IMAGES[:3]]
    try:
        with ThreadPoolExecutor(3) as pool:
            together = list(pool.map(lambda image: batcher.predict([image]), images))
        alone = batcher.predict(images[:1])
    finally:
        batcher.close()
    assert calls == [4, 2]
    for image, answer in zip(images, together):
        assert len(answer) == 1
        np.testing.assert_allclose(answer[0].scores, predict([image])[0].scores, atol=1e-4)
    assert len(alone) == 1
    np.testing.assert_allclose(alone[0].boxes, together[0][0].boxes, atol=1e-3)
