"""Metric arithmetic against hand-computed values: parsing TF Serving's exposition, deltas
across restarts, merging replicas, percentiles from buckets (Prometheus' histogram_quantile)."""

import pytest

from deployer.metrics.arithmetic import (
    Interval,
    add,
    add_buckets,
    bound_key,
    compact,
    cumulative,
    delta,
    merge,
    parse,
    parse_with_prometheus_client,
    per_bucket,
    quantile,
    restarted,
    to_interval,
)
from deployer.tfserving import LATENCY_BUCKETS
from tfserving_dev.metrics import ServingMetrics

# What a real TF Serving 2.x prints (other metrics, "{}" label sets, TYPE lines without samples).
TF_SERVING_TEXT = """\
# TYPE :tensorflow:cc:saved_model:load_attempt_count counter
:tensorflow:cc:saved_model:load_attempt_count{model_path="/models/iris/1",status="success"} 1
# TYPE :tensorflow:core:graph_runs counter
:tensorflow:core:graph_runs{} 21558640
# TYPE :tensorflow:serving:request_example_count_total counter
# TYPE :tensorflow:serving:request_count counter
:tensorflow:serving:request_count{model_name="iris",status="OK"} 6
:tensorflow:serving:request_count{model_name="iris",status="INVALID_ARGUMENT"} 2
# TYPE :tensorflow:serving:request_latency histogram
:tensorflow:serving:request_latency_bucket{model_name="iris",API="predict",entrypoint="REST",le="10"} 0
:tensorflow:serving:request_latency_bucket{model_name="iris",API="predict",entrypoint="REST",le="18"} 3
:tensorflow:serving:request_latency_bucket{model_name="iris",API="predict",entrypoint="REST",le="1.27482e+06"} 8
:tensorflow:serving:request_latency_bucket{model_name="iris",API="predict",entrypoint="REST",le="+Inf"} 8
:tensorflow:serving:request_latency_sum{model_name="iris",API="predict",entrypoint="REST"} 1234
:tensorflow:serving:request_latency_count{model_name="iris",API="predict",entrypoint="REST"} 8
:tensorflow:serving:request_latency_bucket{model_name="iris",API="classify",entrypoint="REST",le="10"} 1
:tensorflow:serving:request_latency_bucket{model_name="iris",API="classify",entrypoint="REST",le="18"} 1
:tensorflow:serving:request_latency_bucket{model_name="iris",API="classify",entrypoint="REST",le="1.27482e+06"} 1
:tensorflow:serving:request_latency_bucket{model_name="iris",API="classify",entrypoint="REST",le="+Inf"} 1
:tensorflow:serving:request_latency_sum{model_name="iris",API="classify",entrypoint="REST"} 6
:tensorflow:serving:request_latency_count{model_name="iris",API="classify",entrypoint="REST"} 1
"""


def snap(ok=0, bad=0, buckets=None, total=0.0, count=None, model="iris"):
    """One model's counters (buckets cumulative, as exposed)."""
    requests = {"OK": ok, **({"INVALID_ARGUMENT": bad} if bad else {})}
    buckets = buckets or {"+Inf": ok + bad}
    return {
        model: {
            "requests": requests,
            "buckets": buckets,
            "sum": total,
            "count": count if count is not None else buckets["+Inf"],
        }
    }


# --- parsing ---


def test_the_parser_reads_tf_servings_names_with_their_leading_colon_and_sums_the_apis():
    snapshot = parse(TF_SERVING_TEXT)

    assert snapshot == {
        "iris": {
            "requests": {"OK": 6, "INVALID_ARGUMENT": 2},
            "buckets": {"10": 1, "18": 4, "1274820": 9, "+Inf": 9},
            "sum": 1240.0,
            "count": 9,
        }
    }


def test_samples_without_type_lines_are_read_too():
    """Untyped, prometheus_client keeps the counter's name (typed, it renames it to _total)."""
    untyped = "\n".join(line for line in TF_SERVING_TEXT.splitlines() if not line.startswith("#")) + "\n"

    assert parse(untyped) == parse(TF_SERVING_TEXT)


ODD_BUT_VALID = """\
:tensorflow:serving:request_count{model_name="a \\"quoted\\" model, with } and \\\\",status="OK",} 3 1700000000000
:tensorflow:serving:request_count{model_name="b\\nnewline",status="OK"}   4
:tensorflow:serving:request_count{model_name="c",status="OK"} NaN
:tensorflow:serving:request_latency_sum{model_name="c",API="predict",entrypoint="REST"} +Inf
:tensorflow:serving:request_latency_count{model_name="c",API="predict",entrypoint="REST"} 2.0
"""


@pytest.mark.parametrize("text", [TF_SERVING_TEXT, ODD_BUT_VALID], ids=["tf-serving", "escapes-spaces-timestamps"])
def test_the_fast_parser_reads_what_prometheus_clients_parser_reads(text):
    assert parse(text) == parse_with_prometheus_client(text)


def test_the_fast_parser_agrees_on_our_model_servers_exposition():
    metrics = ServingMetrics()
    for micros, status in [(5, "OK"), (15, "OK"), (15, "INVALID_ARGUMENT"), (2e9, "OK")]:
        metrics.record(model_name="iris", api="predict", status=status, micros=micros)

    assert parse(metrics.exposition()) == parse_with_prometheus_client(metrics.exposition())


@pytest.mark.parametrize(
    "line",
    [
        ':tensorflow:serving:request_count{model_name="iris",status="OK"}',  # no value
        ':tensorflow:serving:request_count{model_name="iris",status="OK"} many',
        ":tensorflow:serving:request_count{model_name=iris} 1",  # unquoted label value
    ],
)
def test_a_broken_line_of_our_metrics_is_refused(line):
    with pytest.raises(ValueError):
        parse(line + "\n")
    with pytest.raises(ValueError):
        parse_with_prometheus_client(line + "\n")


def test_an_exposition_without_our_metrics_is_an_empty_snapshot():
    assert parse("# TYPE :tensorflow:core:graph_runs counter\n:tensorflow:core:graph_runs{} 5\n") == {}


def test_our_model_servers_exposition_parses_to_what_it_recorded():
    metrics = ServingMetrics()
    for micros, status in [(5, "OK"), (15, "OK"), (15, "INVALID_ARGUMENT"), (2e9, "OK")]:
        metrics.record(model_name="iris", api="predict", status=status, micros=micros)

    snapshot = parse(metrics.exposition())["iris"]

    assert snapshot["requests"] == {"OK": 3, "INVALID_ARGUMENT": 1}
    # TF Serving records the latency of successful requests only (model_servers/http_server.cc).
    assert snapshot["count"] == 3 and snapshot["sum"] == pytest.approx(2e9 + 20)
    assert len(snapshot["buckets"]) == len(LATENCY_BUCKETS) + 1 == 34
    assert snapshot["buckets"]["10"] == 1 and snapshot["buckets"]["18"] == 2
    assert snapshot["buckets"]["1474760000"] == 2 and snapshot["buckets"]["+Inf"] == 3  # 2e9 µs is past the last bound


def test_text_that_is_not_an_exposition_is_refused():
    with pytest.raises(ValueError):
        parse("<html>502 Bad Gateway</html>\n")


@pytest.mark.parametrize(
    "le, key",
    [
        ("10", "10"),
        ("32.4", "32.4"),
        ("1.27482e+06", "1274820"),
        ("+Inf", "+Inf"),
        (104.976, "104.976"),
        ("1.47476e+09", "1474760000"),
    ],
)
def test_bucket_bounds_get_one_spelling(le, key):
    assert bound_key(le) == key


# --- deltas ---


@pytest.mark.parametrize(
    "previous, current, expected",
    [
        # plain increments
        (snap(ok=10, bad=2), snap(ok=15, bad=3), (6, 1)),
        # the replica restarted: its counters went down, so everything it counts now is new
        (snap(ok=100, bad=5), snap(ok=7, bad=1), (8, 1)),
        # restarted and already past the old OK count: the vanished INVALID_ARGUMENT series gives it away
        (snap(ok=100, bad=5), snap(ok=150), (150, 0)),
        # a status seen for the first time is new in full
        (snap(ok=10), snap(ok=12, bad=4), (6, 4)),
        # no baseline
        (None, snap(ok=3, bad=1), (4, 1)),
    ],
    ids=["increments", "counter-reset", "reset-with-vanished-series", "new-status", "no-baseline"],
)
def test_deltas_of_one_replica(previous, current, expected):
    """expected: (requests, errors) in the interval."""
    interval = to_interval(delta(previous, current))

    assert (interval.requests, interval.errors) == expected


def test_a_histogram_that_went_down_is_a_restart_even_when_the_request_counter_did_not():
    before = snap(ok=10, buckets={"10": 4, "18": 10, "+Inf": 10}, total=120)
    after = snap(ok=12, buckets={"10": 2, "18": 12, "+Inf": 12}, total=110)

    assert restarted(before, after)
    interval = to_interval(delta(before, after))
    assert interval.requests == 12 and interval.buckets == {"10": 2, "18": 10}
    assert interval.latency_sum_us == 110


def test_histogram_deltas_are_taken_bucket_by_bucket():
    before = snap(ok=5, buckets={"10": 1, "18": 4, "32.4": 5, "+Inf": 5}, total=60)
    after = snap(ok=9, buckets={"10": 1, "18": 6, "32.4": 8, "+Inf": 9}, total=150)

    interval = to_interval(delta(before, after))

    assert interval.buckets == {"10": 0, "18": 2, "32.4": 1, "+Inf": 1}
    assert interval.latency_sum_us == 90


def test_replica_deltas_merge_into_one_interval_with_any_non_ok_status_an_error():
    a = {
        "iris": {
            "requests": {"OK": 5, "INVALID_ARGUMENT": 1},
            "buckets": {"10": 2, "18": 6, "+Inf": 6},
            "sum": 60.0,
            "count": 6,
        }
    }
    b = {
        "iris": {
            "requests": {"OK": 2, "NOT_FOUND": 1, "INTERNAL": 1},
            "buckets": {"10": 0, "18": 3, "+Inf": 4},
            "sum": 1e6,
            "count": 4,
        },
        "typo": {"requests": {"NOT_FOUND": 2}, "buckets": {}, "sum": 0.0, "count": 0},
    }

    interval = to_interval(merge([a, b]))

    assert interval.requests == 12 and interval.errors == 5
    assert interval.error_rate == pytest.approx(5 / 12)
    assert interval.buckets == {"10": 2, "18": 7, "+Inf": 1}
    assert interval.latency_sum_us == pytest.approx(1e6 + 60)


def test_merging_nothing_is_an_empty_interval():
    assert to_interval(merge([])) == Interval()
    assert Interval().error_rate is None


# --- buckets and percentiles ---


@pytest.mark.parametrize(
    "q, buckets, expected_ms",
    [
        # rank 4 of 8 falls in (18, 32.4] holding 5, one into it: 18 + 14.4 * 1/5 µs
        (0.5, {"10": 0, "18": 3, "32.4": 5}, 0.02088),
        # the lowest bucket interpolates from 0: 10 * 2/4 µs
        (0.5, {"10": 4}, 0.005),
        # rank 95 of 100: (1000, 2000] holds 50, 45 into it
        (0.95, {"1000": 50, "2000": 50}, 1.9),
        # exactly at a bucket's top: its upper bound
        (0.99, {"100": 99, "200": 1}, 0.1),
        # p99 of 1000 requests, 5 in (2000, 5000]: rank 990 is 4 into it, 3000 * 4/5 above 2000 µs
        (0.99, {"1000": 900, "2000": 86, "5000": 5, "10000": 9}, 4.4),
        # the rank falls in +Inf: the highest finite bound
        (0.5, {"1000": 1, "+Inf": 9}, 1.0),
        # rank 99 of 100 tops the last finite bucket; q=1 (rank 100) lands in +Inf: that bound too
        (0.99, {"1000": 98, "1474760000": 1, "+Inf": 1}, 1474760.0),
        (1.0, {"1000": 98, "1474760000": 1, "+Inf": 1}, 1474760.0),
        # bounds printed in exponent form mean the same
        (0.5, {"708235": 0, "1274820": 2}, (708235 + (1274820 - 708235) * 0.5) / 1000),
    ],
    ids=[
        "interpolated",
        "lowest-bucket-from-zero",
        "p95",
        "at-bucket-top",
        "p99-tail",
        "inf-bucket",
        "last-finite-bucket",
        "q1-in-inf-bucket",
        "large-bounds",
    ],
)
def test_quantiles_from_bucket_counts(q, buckets, expected_ms):
    assert quantile(q, buckets) == pytest.approx(expected_ms)


@pytest.mark.parametrize("buckets", [{}, {"10": 0, "18": 0}, {"+Inf": 0}], ids=["none", "all-zero", "inf-only-zero"])
def test_no_observations_have_no_quantile(buckets):
    assert quantile(0.95, buckets) is None


def test_only_an_inf_bucket_has_no_quantile():
    """Prometheus needs two buckets to interpolate; a lone +Inf has no finite bound to give."""
    assert quantile(0.5, {"+Inf": 3}) is None


@pytest.mark.parametrize("q", [0, -0.1, 1.5])
def test_quantile_q_outside_0_to_1_is_refused(q):
    with pytest.raises(ValueError):
        quantile(q, {"10": 1})


def test_cumulative_and_per_bucket_counts_convert_both_ways():
    per = {"10": 1, "18": 0, "32.4": 4, "+Inf": 2}
    assert cumulative(per) == [(10.0, 1), (18.0, 1), (32.4, 5), (float("inf"), 7)]
    assert per_bucket({"10": 1, "18": 1, "32.4": 5, "+Inf": 7}) == per
    assert cumulative({"10": 2})[-1] == (float("inf"), 2)  # an implied +Inf


def test_compacting_keeps_only_the_empty_buckets_that_bound_a_full_one_and_changes_no_quantile():
    full = {"10": 0, "18": 0, "32.4": 3, "58.32": 0, "104.976": 0, "188.957": 2, "340.122": 0, "+Inf": 0}

    small = compact(full)

    assert small == {"18": 0, "32.4": 3, "104.976": 0, "188.957": 2}
    for q in (0.1, 0.5, 0.7, 0.95, 0.99, 1.0):
        assert quantile(q, small) == pytest.approx(quantile(q, full))


def test_summing_compacted_buckets_keeps_every_quantile_exact():
    a = {"10": 0, "18": 0, "32.4": 3, "58.32": 0, "+Inf": 0}
    b = {"10": 0, "18": 0, "32.4": 0, "58.32": 0, "104.976": 0, "188.957": 2, "+Inf": 1}
    full_sum = {k: a.get(k, 0) + b.get(k, 0) for k in b}

    summed = add_buckets(compact(a), compact(b))

    assert summed == {"18": 0, "32.4": 3, "104.976": 0, "188.957": 2, "+Inf": 1}
    for q in (0.2, 0.5, 0.8, 0.95):
        assert quantile(q, summed) == pytest.approx(quantile(q, full_sum))


def test_intervals_add_up_for_downsampling():
    first = Interval(requests=10, errors=1, buckets={"10": 0, "18": 10}, latency_sum_us=150)
    second = Interval(requests=5, errors=2, buckets={"18": 0, "32.4": 5}, latency_sum_us=140)

    total = add(first, second)

    assert total == Interval(requests=15, errors=3, buckets={"10": 0, "18": 10, "32.4": 5}, latency_sum_us=290)
    # rank 7.5 of 15 in (10, 18] holding 10: 10 + 8 * 0.75 µs
    assert total.percentile(0.5) == pytest.approx(0.016)
    assert add() == Interval()
