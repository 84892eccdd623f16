"""PromQL for a Kubernetes deployment's TF Serving metrics, as Prometheus users write it.

The collector reads raw counters (``pod_counters``) and does its own arithmetic
(``arithmetic.py``): see ``collect.py`` for why not ``increase(...[10s])``. Over a window of
a minute or more, the functions Prometheus users expect give the console's figures, which is
what a Grafana panel beside the console should show (tests/test_metrics_prometheus.py runs
both against a real Prometheus and shows they agree):

- requests in the window: ``sum(increase(request_count[w]))``; errors: the same with
  ``status!="OK"``; rate: ``rate()`` instead of ``increase()``;
- percentiles: ``histogram_quantile(q, sum by (le) (increase(request_latency_bucket[w])))``,
  in µs (the console shows ms).

``increase()`` extrapolates each series to the window's edges (by at most one scrape interval
at either end), so over a window ``w`` at scrape interval ``s`` its counts lie between the
console's and ``f = w / (w - 2s)`` times them; it handles counter resets as the console does.
Each cumulative bucket is extrapolated on its own, so ``histogram_quantile(q)`` lies between
the console's ``q / f`` and ``q * f`` quantiles (only above the first when ``q * f >= 1``):
close for the median, looser in a sparse tail.

Series are selected by the ``namespace`` and ``pod`` labels the usual kubernetes_sd
relabelling gives a pod's series (``<deployment>-<replicaset hash>-<suffix>``).
"""

import re

from deployer.metrics.arithmetic import SAMPLE_NAMES
from deployer.tfserving import REQUEST_COUNT, REQUEST_LATENCY

NAMESPACE_LABEL, POD_LABEL = "namespace", "pod"


def _quoted(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def pod_matchers(namespace: str, *names: str) -> str:
    """The label matchers of one or more Deployments' pods (names are DNS labels: no regex
    characters)."""
    deployments = "|".join(_quoted(name) for name in names)
    if len(names) > 1:
        deployments = f"({deployments})"
    return f'{NAMESPACE_LABEL}="{_quoted(namespace)}",{POD_LABEL}=~"{deployments}-[a-z0-9]+-[a-z0-9]+"'


def pod_of(pod: str, name: str) -> bool:
    """Whether a pod's name is one of Deployment ``name``'s (what ``pod_matchers`` selects):
    a hash and a suffix without dashes follow the name, so the pods of ``<name>-canary`` are
    not ``<name>``'s."""
    return re.fullmatch(f"{re.escape(name)}-[a-z0-9]+-[a-z0-9]+", pod) is not None


def pod_counters(namespace: str, *names: str) -> str:
    """The raw request counters and latency histogram of the Deployments' pods (what the
    collector reads at each scrape: the stable Deployment's and its canary's)."""
    return f'{{__name__=~"{"|".join(SAMPLE_NAMES)}",{pod_matchers(namespace, *names)}}}'


def requests(namespace: str, name: str, window: str, *, errors: bool = False) -> str:
    """Requests (or those that failed) in the window, summed over the pods."""
    status = ',status!="OK"' if errors else ""
    return f"sum(increase({REQUEST_COUNT}{{{pod_matchers(namespace, name)}{status}}}[{window}]))"


def latency_quantile(q: float, namespace: str, name: str, window: str) -> str:
    """The q-quantile of request latency in µs over the window, from the summed buckets."""
    return (
        f"histogram_quantile({q}, sum by (le) "
        f"(increase({REQUEST_LATENCY}_bucket{{{pod_matchers(namespace, name)}}}[{window}])))"
    )
