"""Request metrics under TF Serving's own Prometheus names."""

import threading

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

from deployer.tfserving_common import LATENCY_BUCKETS, REQUEST_COUNT, REQUEST_LATENCY

# --- metrics under TF Serving's names ---

class ServingMetrics:
    """request_count and request_latency, kept per server instance.

    A Collector in a private CollectorRegistry; exposition() renders it the way TF Serving
    does, because prometheus_client would rename the counter to ..._total and TF Serving's
    counter has no suffix (dashboards built on this server must work on the real one)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._counts: dict[tuple, int] = {}  # (model_name, status) -> requests
        self._latency: dict[tuple, list] = {}  # (model_name, API, entrypoint) -> [buckets, sum, count]
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    def record(self, *, model_name: str, api: str, status: str, micros: float) -> None:
        with self._lock:
            key = (model_name, status)
            self._counts[key] = self._counts.get(key, 0) + 1
            series = self._latency.setdefault((model_name, api, "REST"), [[0] * len(LATENCY_BUCKETS), 0.0, 0])
            for i, bound in enumerate(LATENCY_BUCKETS):
                if micros <= bound:
                    series[0][i] += 1
            series[1] += micros
            series[2] += 1

    def collect(self):
        with self._lock:
            counts = dict(self._counts)
            latency = {k: (list(v[0]), v[1], v[2]) for k, v in self._latency.items()}
        counter = CounterMetricFamily(REQUEST_COUNT, "The total number of requests.",
                                      labels=["model_name", "status"])
        for (model_name, status), value in sorted(counts.items()):
            counter.add_metric([model_name, status], value)
        histogram = HistogramMetricFamily(
            REQUEST_LATENCY, "Distribution of wall time (in microseconds) for Tensorflow Serving request.",
            labels=["model_name", "API", "entrypoint"])
        for labels, (buckets, total, count) in sorted(latency.items()):
            pairs = [(f"{b:g}", n) for b, n in zip(LATENCY_BUCKETS, buckets, strict=True)] + [("+Inf", count)]
            histogram.add_metric(list(labels), pairs, sum_value=total)
        return [counter, histogram]

    def exposition(self) -> str:
        lines = []
        for family in self.registry.collect():
            lines.append(f"# TYPE {family.name} {family.type}")
            for sample in family.samples:
                if sample.name.endswith("_created"):
                    continue
                name = family.name if family.type == "counter" else sample.name
                lines.append(f"{name}{_label_text(sample.labels)} {_number(sample.value)}")
        return "\n".join(lines) + "\n"


def _label_text(labels: dict) -> str:
    if not labels:
        return ""
    escape = lambda v: str(v).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")  # noqa: E731
    return "{" + ",".join(f'{k}="{escape(v)}"' for k, v in labels.items()) + "}"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


