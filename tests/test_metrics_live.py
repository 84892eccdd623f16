"""Live metrics end to end on the embedded default: loadgen sends predicts to a real local
model server, the scraper reads its Prometheus endpoint, and the series the charts read
agrees with what loadgen measured."""

import threading

import pytest
from django.core.management import call_command

from deployer.metrics.collect import scrape_deployment
from deployer.models import Deployment
from tests.test_rollout_local import promote

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_loadgen_traffic_appears_in_the_series_and_agrees_with_what_loadgen_measured(
    browser_client, api, engineer, approver, viewer, iris, staging_local, sent_tasks, capsys
):
    promote(browser_client, engineer, approver, iris.versions.get(version=1), staging_local.environment, sent_tasks)
    deployment = Deployment.objects.get(model=iris)
    scrape_deployment(deployment.pk)  # the baseline, as the beat task's first scrape

    stop = threading.Event()

    def scraper():  # what celery beat does every 10 s, faster here
        while not stop.wait(2):
            scrape_deployment(deployment.pk)

    thread = threading.Thread(target=scraper, daemon=True)
    thread.start()
    try:
        call_command("loadgen", "iris/staging", rps=20, duration=22, bad_fraction=0.2)
    finally:
        stop.set()
        thread.join()
    scrape_deployment(deployment.pk)
    out = capsys.readouterr().out
    sent = int(out.split("sent ")[1].split(" ")[0])
    errors = int(out.split("errors ")[1].split(" ")[0])
    assert sent == 440 and 50 <= errors <= 130, out

    response = api(viewer).get(f"/api/v1/deployments/{deployment.pk}/metrics/", {"window": 900})
    assert response.status_code == 200
    data = response.json()
    totals = data["totals"]
    # Counters are exact: every request loadgen sent was counted once, errors included, and so
    # was loadgen's status call that found the replicas (TF Serving's request_count counts
    # every /v1 request: model_servers/http_server.cc).
    assert totals["requests"] == sent + 1 and totals["errors"] == errors
    # 22 s of load cover at least one whole 10 s point: its rate is loadgen's 20/s, within
    # 20 % (a scrape lands up to 2 s either side of the interval's edge). The first and last
    # points are only partly covered, so they show less.
    busy = [r for r in data["points"]["rps"] if r]
    assert busy and 20 * 0.8 <= max(busy) <= 20 * 1.2, busy
    assert sum(r * data["step"] for r in busy) == pytest.approx(sent + 1)
    assert totals["p50_ms"] is not None and totals["p95_ms"] >= totals["p50_ms"]
    assert data["points"]["version"][-1] in (1, None) and 1 in data["points"]["version"]


def test_the_api_refuses_a_window_beyond_seven_days_naming_the_field(api, viewer, iris, staging_local):
    from deployer.services import deployment_get_or_create

    deployment = deployment_get_or_create(target=staging_local, model=iris)
    response = api(viewer).get(f"/api/v1/deployments/{deployment.pk}/metrics/", {"window": 999999999})
    assert response.status_code == 400 and "window" in response.json()["fields"]
