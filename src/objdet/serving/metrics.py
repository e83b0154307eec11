"""Prometheus metrics at ``/monitoring/prometheus/metrics``, named as TF Serving names them.

* ``:tensorflow:serving:request_count{model_name, status}``: requests by outcome (OK or the
  error code's name);
* ``:tensorflow:serving:request_latency{model_name, API, entrypoint}``: a histogram of the
  time to answer, in microseconds (API predict/metadata/status, entrypoint REST/GRPC);
* ``:tensorflow:serving:batch_size{model_name}``: images per model call when batching.
"""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict

LATENCY_BUCKETS_US = (100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000,
                      250_000, 500_000, 1_000_000, 2_500_000, 5_000_000, 10_000_000)
PREFIX = ":tensorflow:serving:"


class _Histogram:
    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)  # the last one is +Inf
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value

    def lines(self, name: str, labels: str) -> list[str]:
        lines, cumulative = [], 0
        for bound, count in zip([*map(str, self.buckets), "+Inf"], self.counts):
            cumulative += count
            lines.append(f'{name}_bucket{{{labels},le="{bound}"}} {cumulative}')
        lines.append(f"{name}_sum{{{labels}}} {self.total:g}")
        lines.append(f"{name}_count{{{labels}}} {cumulative}")
        return lines


class Metrics:
    """Thread-safe counters and histograms, rendered in the Prometheus text format."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str], int] = defaultdict(int)
        self._latency: dict[tuple[str, str, str], _Histogram] = {}
        self._batch_sizes: dict[str, _Histogram] = {}

    def record_request(self, model_name: str, api: str, entrypoint: str, status: str,
                       seconds: float) -> None:
        with self._lock:
            self._requests[(model_name, status)] += 1
            key = (model_name, api, entrypoint)
            if key not in self._latency:
                self._latency[key] = _Histogram(LATENCY_BUCKETS_US)
            self._latency[key].observe(seconds * 1e6)

    def record_batch(self, model_name: str, size: int) -> None:
        with self._lock:
            if model_name not in self._batch_sizes:
                self._batch_sizes[model_name] = _Histogram((1, 2, 4, 8, 16, 32, 64, 128))
            self._batch_sizes[model_name].observe(size)

    def render(self) -> str:
        with self._lock:
            lines = [f"# TYPE {PREFIX}request_count counter"]
            for (model, status), count in sorted(self._requests.items()):
                lines.append(f'{PREFIX}request_count{{model_name="{_escape(model)}",'
                             f'status="{status}"}} {count}')
            lines.append(f"# TYPE {PREFIX}request_latency histogram")
            for (model, api, entrypoint), histogram in sorted(self._latency.items()):
                labels = f'API="{api}",entrypoint="{entrypoint}",model_name="{_escape(model)}"'
                lines += histogram.lines(f"{PREFIX}request_latency", labels)
            lines.append(f"# TYPE {PREFIX}batch_size histogram")
            for model, histogram in sorted(self._batch_sizes.items()):
                lines += histogram.lines(f"{PREFIX}batch_size", f'model_name="{_escape(model)}"')
        return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
