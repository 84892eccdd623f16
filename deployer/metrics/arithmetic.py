"""Metric arithmetic on TF Serving's counters: pure functions, no Django, no I/O.

The flow for one scrape: ``parse`` each replica's exposition into a Snapshot, take
``delta(previous, current)`` per replica, ``merge`` the deltas across replicas, and turn the
sum into an ``Interval`` (what one MetricPoint row holds). Latency stays a histogram all the
way: ``quantile`` computes percentiles from bucket counts, so coarser points are exact sums
of finer ones and no percentile is ever averaged.

A Snapshot is plain JSON (ScrapeState.counters stores it as is):

    {"<model_name>": {"requests": {"<status>": n, ...},      # request_count by status
                      "buckets": {"<le>": n, ..., "+Inf": n},  # request_latency, cumulative, µs
                      "sum": µs, "count": n}}

summed over the histogram's other labels (API, entrypoint). Bucket keys are canonical
(``bound_key``): TF Serving prints bounds such as "1.27482e+06", stored as "1274820".
"""

import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from deployer.tfserving import REQUEST_COUNT, REQUEST_LATENCY

INF = "+Inf"
OK = "OK"

# prometheus_client's parser renames a typed counter's samples to <name>_total, and gives
# untyped samples (no "# TYPE" line) their names unchanged: match on both.
_COUNT_NAMES = {REQUEST_COUNT, f"{REQUEST_COUNT}_total"}
_BUCKET, _SUM, _COUNT = f"{REQUEST_LATENCY}_bucket", f"{REQUEST_LATENCY}_sum", f"{REQUEST_LATENCY}_count"
SAMPLE_NAMES = (*sorted(_COUNT_NAMES), _BUCKET, _SUM, _COUNT)  # every sample name read here
_PREFIX = (REQUEST_COUNT, REQUEST_LATENCY)  # what their lines start with

Snapshot = dict  # see the module docstring


# --- bucket keys -------------------------------------------------------------


def bound_key(le: str | float) -> str:
    """The canonical key of a bucket bound: "+Inf", "18", "32.4", "1274820"."""
    value = float(le)
    if math.isinf(value):
        return INF
    return str(int(value)) if value.is_integer() else repr(value)


def bound_value(key: str) -> float:
    return math.inf if key == INF else float(key)


def _sorted_keys(buckets: Mapping[str, float]) -> list[str]:
    return sorted(buckets, key=bound_value)


# --- parsing -------------------------------------------------------------------


def _empty_model() -> dict:
    return {"requests": {}, "buckets": {}, "sum": 0.0, "count": 0}


# A sample line of the text format: name, optional {labels}, value, optional timestamp.
_SAMPLE_LINE = re.compile(r"(?P<name>[^{\s]+)(?:\{(?P<labels>.*)\})?[ \t]+(?P<value>\S+)(?:[ \t]+-?\d+)?[ \t]*")
_LABEL_PAIR = re.compile(
    r'[ \t]*(?P<name>[a-zA-Z_][a-zA-Z0-9_]*)[ \t]*=[ \t]*"(?P<value>(?:[^"\\]|\\.)*)"[ \t]*(?:,|$)'
)
_ESCAPES = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


def _labels(text: str) -> dict[str, str]:
    labels, position = {}, 0
    while position < len(text):
        match = _LABEL_PAIR.match(text, position)
        if match is None:
            raise ValueError(f"unreadable labels: {text[:200]}")
        value = match["value"]
        if "\\" in value:
            value = re.sub(r"\\[\\\"n]", lambda m: _ESCAPES[m[0]], value)
        labels[match["name"]] = value
        position = match.end()
    return labels


def _our_samples(text: str) -> Iterator[tuple[str, dict[str, str], float]]:
    """The samples of the metrics read here, straight from their lines. A model server's
    exposition holds many other metrics, and prometheus_client's parser reads every line
    character by character: about 25 µs a line, most of a scrape cycle's CPU (``make bench``)."""
    for line in text.splitlines():
        if not line.startswith(_PREFIX):
            continue
        match = _SAMPLE_LINE.fullmatch(line)
        if match is None:
            raise ValueError(f"unreadable sample line: {line[:200]}")
        yield match["name"], _labels(match["labels"] or ""), float(match["value"])


def parse(text: str) -> Snapshot:
    """The request counters and latency histogram in one exposition, per model_name.

    Raises ValueError when the text is not the Prometheus text format. Only the lines of the
    metrics read here are parsed (``_our_samples``; a test holds it to prometheus_client's
    parser); a text without any is checked whole by prometheus_client's parser, so an HTML
    error page is refused rather than read as "no requests"."""
    samples = list(_our_samples(text))
    if not samples:
        samples = [(s.name, s.labels, s.value) for f in text_string_to_metric_families(text) for s in f.samples]
    return from_samples(samples)


def parse_with_prometheus_client(text: str) -> Snapshot:
    """``parse`` done by prometheus_client's own parser, every line (the reference the fast
    path is tested against)."""
    return from_samples(
        (sample.name, sample.labels, sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    )


def from_samples(samples: Iterable[tuple[str, Mapping[str, str], float]]) -> Snapshot:
    """A Snapshot from (metric name, labels, value) samples, wherever they were read (an
    exposition, or Prometheus' query API); other metrics and non-finite values are skipped."""
    snapshot: Snapshot = {}
    for name, labels, value in samples:
        if (name not in _COUNT_NAMES and name not in (_BUCKET, _SUM, _COUNT)) or not math.isfinite(value):
            continue
        model = snapshot.setdefault(labels.get("model_name", ""), _empty_model())
        if name in _COUNT_NAMES:
            status = labels.get("status", "")
            model["requests"][status] = model["requests"].get(status, 0) + value
        elif name == _BUCKET:
            key = bound_key(labels["le"])
            model["buckets"][key] = model["buckets"].get(key, 0) + value
        elif name == _SUM:
            model["sum"] += value
        else:
            model["count"] += value
    return snapshot


# --- deltas ------------------------------------------------------------------------


def _series(snapshot: Snapshot) -> dict[tuple, float]:
    """Every counter of a snapshot as one flat mapping, to compare two snapshots."""
    flat: dict[tuple, float] = {}
    for model, counters in snapshot.items():
        flat.update({(model, "requests", k): v for k, v in counters["requests"].items()})
        flat.update({(model, "buckets", k): v for k, v in counters["buckets"].items()})
        flat[(model, "sum")] = counters["sum"]
        flat[(model, "count")] = counters["count"]
    return flat


def restarted(previous: Snapshot, current: Snapshot) -> bool:
    """Whether the replica restarted between the two reads: a counter went down, or a series
    it had disappeared (TF Serving never drops a series while the process lives).

    Decided for the whole replica, not per series: a restart resets every counter at once,
    and judging each bucket alone would mix pre- and post-restart counts in one histogram
    (a bucket that grew back past its old value would look like a small increase)."""
    before, after = _series(previous), _series(current)
    return any(key not in after or after[key] < value for key, value in before.items())


def delta(previous: Snapshot | None, current: Snapshot) -> Snapshot:
    """What happened between two reads of one replica. After a restart (counter reset) the
    current values are the increment, as Prometheus' rate() takes them."""
    if previous is None or restarted(previous, current):
        return current
    increments: Snapshot = {}
    for model, now in current.items():
        before = previous.get(model) or _empty_model()
        increments[model] = {
            "requests": {k: v - before["requests"].get(k, 0) for k, v in now["requests"].items()},
            "buckets": {k: v - before["buckets"].get(k, 0) for k, v in now["buckets"].items()},
            "sum": now["sum"] - before["sum"],
            "count": now["count"] - before["count"],
        }
    return increments


def merge(snapshots: Iterable[Snapshot]) -> Snapshot:
    """The sum of several replicas' deltas (cumulative buckets add up bucket by bucket)."""
    total: Snapshot = {}
    for snapshot in snapshots:
        for model, counters in snapshot.items():
            into = total.setdefault(model, _empty_model())
            for part in ("requests", "buckets"):
                for key, value in counters[part].items():
                    into[part][key] = into[part].get(key, 0) + value
            into["sum"] += counters["sum"]
            into["count"] += counters["count"]
    return total


# --- buckets -------------------------------------------------------------------------


def per_bucket(cumulative: Mapping[str, float]) -> dict[str, int]:
    """Cumulative counts by upper bound -> counts in each bucket."""
    counts: dict[str, int] = {}
    below: float = 0
    for key in _sorted_keys(cumulative):
        # max(): a cumulative series summed from rounded or float values may dip by a hair.
        counts[key] = max(0, round(cumulative[key] - below))
        below = max(below, cumulative[key])
    return counts


def cumulative(buckets: Mapping[str, float]) -> list[tuple[float, float]]:
    """Per-bucket counts -> [(upper bound, cumulative count)], ascending, ending at +Inf."""
    pairs: list[tuple[float, float]] = []
    running: float = 0
    for key in _sorted_keys(buckets):
        running += buckets[key]
        pairs.append((bound_value(key), running))
    if not pairs or not math.isinf(pairs[-1][0]):
        pairs.append((math.inf, running))
    return pairs


def compact(buckets: Mapping[str, float]) -> dict[str, int]:
    """Per-bucket counts without the empty buckets that do not matter.

    An empty bucket is kept only when the next one has counts: its bound is that bucket's
    lower edge, which quantile() interpolates from. TF Serving has 34 buckets and a 10 s
    interval usually fills two or three, so this keeps rows small. Sums of compacted dicts
    (merged by key) keep the property."""
    keys = _sorted_keys(buckets)
    kept = {}
    for i, key in enumerate(keys):
        following = buckets[keys[i + 1]] if i + 1 < len(keys) else 0
        if buckets[key] or following:
            kept[key] = int(buckets[key])
    return kept


def add_buckets(*many: Mapping[str, float]) -> dict[str, int]:
    total: dict[str, int] = {}
    for buckets in many:
        for key, value in (buckets or {}).items():
            total[key] = total.get(key, 0) + int(value)
    return compact(total)


def quantile(q: float, buckets: Mapping[str, float]) -> float | None:
    """The q-quantile in milliseconds of per-bucket counts keyed by upper bound in µs; None
    without observations. Prometheus' histogram_quantile: linear interpolation inside the
    bucket the rank falls in, from 0 for the lowest bucket; a rank in the +Inf bucket gives
    the highest finite bound."""
    if not 0 < q <= 1:
        raise ValueError(f"quantile q must be in (0, 1], not {q}")
    pairs = cumulative(buckets)
    observations = pairs[-1][1]
    if observations <= 0 or len(pairs) < 2:
        return None
    rank = q * observations
    b = next((i for i, (_, count) in enumerate(pairs[:-1]) if count >= rank), len(pairs) - 1)
    if b == len(pairs) - 1:
        return pairs[-2][0] / 1000
    end, count = pairs[b]
    start = 0.0
    if b > 0:
        start, below = pairs[b - 1]
        count -= below
        rank -= below
    if b == 0 and end <= 0:
        return end / 1000
    return (start + (end - start) * (rank / count)) / 1000


# --- intervals -----------------------------------------------------------------------


@dataclass(frozen=True)
class Interval:
    """One interval's traffic: what a MetricPoint stores (buckets per bucket, compacted)."""

    requests: int = 0
    errors: int = 0
    buckets: dict = field(default_factory=dict)
    latency_sum_us: float = 0.0

    def percentile(self, q: float) -> float | None:
        return quantile(q, self.buckets)

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None


def to_interval(snapshot: Snapshot) -> Interval:
    """A merged delta as one interval, all models together (a deployment's server serves one
    model; requests that name another are still answered, as errors, by this deployment)."""
    requests = errors = 0
    latency_sum = 0.0
    cumulative_total: dict[str, float] = {}
    for counters in snapshot.values():
        for status, value in counters["requests"].items():
            requests += round(value)
            if status != OK:
                errors += round(value)
        for key, value in counters["buckets"].items():
            cumulative_total[key] = cumulative_total.get(key, 0) + value
        latency_sum += counters["sum"]
    return Interval(
        requests=requests, errors=errors, buckets=compact(per_bucket(cumulative_total)), latency_sum_us=latency_sum
    )


def add(*intervals: Interval) -> Interval:
    """Several intervals as one (two scrapes in one interval, or six 10 s points in a minute)."""
    return Interval(
        requests=sum(i.requests for i in intervals),
        errors=sum(i.errors for i in intervals),
        buckets=add_buckets(*(i.buckets for i in intervals)),
        latency_sum_us=sum(i.latency_sum_us for i in intervals),
    )
