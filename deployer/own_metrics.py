"""The deployer's part of Modelgate's own /metrics (console/metrics.py registers it through
settings.OWN_METRICS_COLLECTORS): rollouts by kind and outcome, and their durations, read
from the rollout rows at scrape time, so they are right whichever worker ran the rollout."""

from django.db.models import Count
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

from .models import Rollout

ROLLOUT_BUCKETS = (5, 15, 30, 60, 120, 300, 600, 1800, 3600)


class RolloutCollector:
    def collect(self):
        totals = CounterMetricFamily("modelgate_rollouts", "Rollouts by kind and outcome.", labels=["kind", "state"])
        for row in Rollout.objects.values("kind", "state").annotate(n=Count("id")).order_by():
            totals.add_metric([row["kind"], row["state"]], row["n"])
        yield totals

        durations = HistogramMetricFamily(
            "modelgate_rollout_duration_seconds", "Finished rollouts, start to end.", labels=["kind", "state"]
        )
        groups: dict = {}
        for kind, state, started, finished in (
            Rollout.objects.filter(started_at__isnull=False, finished_at__isnull=False)
            .values_list("kind", "state", "started_at", "finished_at")
            .iterator()
        ):
            groups.setdefault((kind, state), []).append((finished - started).total_seconds())
        for (kind, state), values in sorted(groups.items()):
            buckets = [(str(le), sum(1 for v in values if v <= le)) for le in ROLLOUT_BUCKETS]
            buckets.append(("+Inf", len(values)))
            durations.add_metric([kind, state], buckets, sum(values))
        yield durations
