"""Metrics under TF Serving's own Prometheus names, recorded where TF Serving records them.

- `:tensorflow:serving:request_count{model_name,status}`: every request to /v1/..., status
  and metadata included (model_servers/http_server.cc, RecordModelRequestCount);
- `:tensorflow:serving:request_latency{model_name,API,entrypoint}`: successful requests only
  (http_server.cc records it when the status is OK; API is "" for status and metadata);
- `:tensorflow:serving:runtime_latency{model_name,API,runtime}`: the model's own run time
  (predict_util.cc, classifier.cc, regressor.cc: API "Predict"/"Classify"/"Regress", runtime "TF1");
- `:tensorflow:cc:saved_model:load_attempt_count{model_path,status}`: one per load,
  "success" or "fail" (tensorflow/cc/saved_model/loader.cc).
"""

import threading

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

from deployer.tfserving import LATENCY_BUCKETS, LOAD_ATTEMPT_COUNT, REQUEST_COUNT, REQUEST_LATENCY, RUNTIME_LATENCY


class _Histogram:
    def __init__(self):
        self.buckets = [0] * len(LATENCY_BUCKETS)
        self.sum = 0.0
        self.count = 0

    def add(self, micros: float) -> None:
        for i, bound in enumerate(LATENCY_BUCKETS):
            if micros <= bound:
                self.buckets[i] += 1
        self.sum += micros
        self.count += 1

    def copy(self) -> tuple:
        return list(self.buckets), self.sum, self.count


class ServingMetrics:
    """The counters and histograms of one server instance.

    A Collector in a private CollectorRegistry; exposition() renders it the way TF Serving's
    util/prometheus_exporter.cc does, because prometheus_client would rename a counter to
    ..._total and TF Serving's counters have no suffix (dashboards built on this server must
    work on the real one)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._counts: dict[tuple, int] = {}  # (model_name, status) -> requests
        self._latency: dict[tuple, _Histogram] = {}  # (model_name, API, entrypoint)
        self._runtime: dict[tuple, _Histogram] = {}  # (model_name, API, runtime)
        self._loads: dict[tuple, int] = {}  # (model_path, "success"/"fail") -> attempts
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    def record(self, *, model_name: str, api: str, status: str, micros: float) -> None:
        """One /v1 request: always counted; its latency only when it succeeded."""
        with self._lock:
            key = (model_name, status)
            self._counts[key] = self._counts.get(key, 0) + 1
            if status == "OK":
                self._latency.setdefault((model_name, api, "REST"), _Histogram()).add(micros)

    def record_runtime(self, *, model_name: str, api: str, micros: float) -> None:
        with self._lock:
            self._runtime.setdefault((model_name, api, "TF1"), _Histogram()).add(micros)

    def record_load(self, *, model_path: str, ok: bool) -> None:
        with self._lock:
            key = (model_path, "success" if ok else "fail")
            self._loads[key] = self._loads.get(key, 0) + 1

    def collect(self):
        with self._lock:
            counts, loads = dict(self._counts), dict(self._loads)
            latency = {k: v.copy() for k, v in self._latency.items()}
            runtime = {k: v.copy() for k, v in self._runtime.items()}
        loaded = CounterMetricFamily(
            LOAD_ATTEMPT_COUNT,
            "The number of times a SavedModel was successfully loaded.",
            labels=["model_path", "status"],
        )
        for labels, value in sorted(loads.items()):
            loaded.add_metric(list(labels), value)
        counter = CounterMetricFamily(REQUEST_COUNT, "The total number of requests.", labels=["model_name", "status"])
        for labels, value in sorted(counts.items()):
            counter.add_metric(list(labels), value)
        families = [loaded, counter]
        for name, text, labels, series in (
            (
                REQUEST_LATENCY,
                "Distribution of wall time (in microseconds) for Tensorflow Serving request.",
                ["model_name", "API", "entrypoint"],
                latency,
            ),
            (
                RUNTIME_LATENCY,
                "Distribution of wall time (in microseconds) for Tensorflow runtime.",
                ["model_name", "API", "runtime"],
                runtime,
            ),
        ):
            histogram = HistogramMetricFamily(name, text, labels=labels)
            for values, (buckets, total, count) in sorted(series.items()):
                pairs = [(f"{b:g}", n) for b, n in zip(LATENCY_BUCKETS, buckets, strict=True)] + [("+Inf", count)]
                histogram.add_metric(list(values), pairs, sum_value=total)
            families.append(histogram)
        return families

    def exposition(self) -> str:
        lines = []
        for family in self.registry.collect():
            lines.append(f"# TYPE {family.name} {family.type}")
            for sample in family.samples:
                if sample.name.endswith("_created"):
                    continue
                name = family.name if family.type == "counter" else sample.name
                lines.append(f"{name}{_label_text(sample.labels)} {_number(sample.value, name.endswith('_sum'))}")
        return "\n".join(lines) + "\n"


def _label_text(labels: dict) -> str:
    if not labels:
        return ""
    escape = lambda v: str(v).replace("\\", "\\\\").replace('"', '\\"')  # noqa: E731 - SanitizeLabelValue
    return "{" + ",".join(f'{k}="{escape(v)}"' for k, v in labels.items()) + "}"


def _number(value: float, is_sum: bool) -> str:
    """Counts as integers (%d); a histogram's sum as absl::StrCat prints a double (six digits)."""
    return f"{float(value):g}" if is_sum else str(int(value))
