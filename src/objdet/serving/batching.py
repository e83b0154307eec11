"""Dynamic batching: images of concurrent requests, one size at a time, in one model call.

As TF Serving's batching (``--enable_batching``): a request's images join a queue per image
size; a batch thread takes up to ``max_batch_size`` images of one size once that many wait
or the oldest has waited ``batch_timeout_micros``, runs them in one ``Servable.predict``
call and hands each request its own detections; with ``allowed_batch_sizes`` the call's
batch is padded (repeating its last image) up to the next allowed size, whose extra answers
are dropped: a runtime then sees only those sizes. A request whose images would take the
queue past ``max_enqueued_batches * max_batch_size`` images is refused with
RESOURCE_EXHAUSTED (HTTP 429) at once instead of waiting.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import torch

from objdet.serving.errors import resource_exhausted
from objdet.serving.model_config import BatchingOptions
from objdet.serving.servable import Servable
from objdet.structures.detections import Detections


@dataclass
class _Task:
    images: list[torch.Tensor]  # uint8 [3, H, W], all of one size
    future: Future[list[Detections]]
    enqueued: float = field(default_factory=time.monotonic)


class Batcher:
    """The batch queue and threads of one servable; ``close`` finishes what was queued."""

    def __init__(self, servable: Servable, options: BatchingOptions,
                 on_batch: Callable[[int], None] | None = None) -> None:
        """``on_batch(images)`` is called after each model call (for the metrics)."""
        self.servable = servable
        self.options = options
        self._on_batch = on_batch
        self._queues: dict[tuple[int, int], deque[_Task]] = {}
        self._queued_images = 0
        self._closed = False
        self._condition = threading.Condition()
        self._threads = [
            threading.Thread(target=self._run, name=f"batch-v{servable.version}-{index}", daemon=True)
            for index in range(options.num_batch_threads)
        ]
        for thread in self._threads:
            thread.start()

    def predict(self, images: list[torch.Tensor]) -> list[Detections]:
        """Each image's detections, computed in batches with other requests' images."""
        by_size: dict[tuple[int, int], list[int]] = {}
        for index, image in enumerate(images):
            by_size.setdefault((int(image.shape[1]), int(image.shape[2])), []).append(index)
        limit = self.options.max_enqueued_batches * self.options.max_batch_size
        tasks = []
        with self._condition:
            closed = self._closed
        if closed:  # unloaded after this request chose the version: it still answers, unbatched
            return self.servable.predict(images)
        with self._condition:
            if self._queued_images + len(images) > limit:
                raise resource_exhausted(
                    "The batch scheduling queue to which this task was submitted is full "
                    f"({self._queued_images} images waiting, limit {limit})")
            for size, indices in by_size.items():
                task = _Task([images[i] for i in indices], Future())
                self._queues.setdefault(size, deque()).append(task)
                tasks.append((indices, task))
            self._queued_images += len(images)
            self._condition.notify_all()
        results: list[Detections | None] = [None] * len(images)
        for indices, task in tasks:
            for index, detections in zip(indices, task.future.result()):
                results[index] = detections
        return [detections for detections in results if detections is not None]

    def close(self) -> None:
        """Stop taking requests; the threads finish every queued task, then exit."""
        with self._condition:
            self._closed = True
            self._condition.notify_all()
        for thread in self._threads:
            thread.join()

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            images = [image for task in batch for image in task.images]
            padding = [images[-1]] * (self.options.padded_size(len(images)) - len(images))
            try:
                detections = self.servable.predict(images + padding)[:len(images)]
            except BaseException as error:  # noqa: BLE001 - handed to each waiting request
                for task in batch:
                    task.future.set_exception(error)
                continue
            if self._on_batch is not None:
                self._on_batch(len(images))
            start = 0
            for task in batch:
                task.future.set_result(detections[start:start + len(task.images)])
                start += len(task.images)

    def _next_batch(self) -> list[_Task] | None:
        """The tasks of the next batch (None once closed and drained)."""
        timeout = self.options.batch_timeout_micros / 1e6
        with self._condition:
            while True:
                waiting = [(queue[0].enqueued, size) for size, queue in self._queues.items() if queue]
                if not waiting:
                    if self._closed:
                        return None
                    self._condition.wait()
                    continue
                oldest, size = min(waiting)
                queue = self._queues[size]
                full = sum(len(task.images) for task in queue) >= self.options.max_batch_size
                wait = oldest + timeout - time.monotonic()
                if full or wait <= 0 or self._closed:
                    return self._take(queue)
                self._condition.wait(wait)

    def _take(self, queue: deque[_Task]) -> list[_Task]:
        """Whole tasks from the front of ``queue`` up to max_batch_size images (a task larger
        than that alone)."""
        batch = [queue.popleft()]
        count = len(batch[0].images)
        while queue and count + len(queue[0].images) <= self.options.max_batch_size:
            count += len(queue[0].images)
            batch.append(queue.popleft())
        self._queued_images -= count
        return batch
