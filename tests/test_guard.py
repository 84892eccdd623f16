"""The guard after a rollout: a version that passes the smoke predict but fails under real
load is rolled back automatically, with the reason, and the previous version serves again."""

import pytest

from console.audit.models import AuditEvent
from deployer import guard, loadgen
from deployer.metrics.collect import scrape_deployment
from deployer.models import Deployment, Rollout
from registry.promotions.models import PromotionRequest
from tests import factories
from tests.deployer_fixtures import predict_sender
from tests.test_rollout_local import promote

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.mark.parametrize(
    "points, expected",
    [
        ([{"requests": 10, "errors": 10, "latency_buckets": {}}], None),  # too few requests to judge
        ([{"requests": 100, "errors": 4, "latency_buckets": {}}], None),
        (
            [
                {"requests": 60, "errors": 3, "latency_buckets": {}},
                {"requests": 40, "errors": 3, "latency_buckets": {}},
            ],
            "error rate 6.0% (6 of 100 requests)",
        ),
        ([{"requests": 100, "errors": 0, "latency_buckets": {"10000": 97, "100000": 3, "+Inf": 0}}], None),
        (
            [{"requests": 100, "errors": 0, "latency_buckets": {"10000": 50, "100000": 50, "+Inf": 0}}],
            "p95 latency 91.0 ms",
        ),
    ],
)
def test_the_guard_judges_error_rate_and_p95_over_the_points_since_going_live(points, expected):
    reason = guard.evaluate(points, error_rate=0.05, p95_ms=50)
    assert (reason is None) if expected is None else expected in reason


def test_a_version_that_fails_under_load_is_rolled_back_by_the_guard(
    browser_client, engineer, approver, iris, staging_local, sent_tasks, mlflow_store
):
    staging_local.guard_error_rate, staging_local.guard_minutes = 0.05, 10
    staging_local.save()
    v3 = factories.faulty_version(actor=engineer, model=iris, store=mlflow_store)
    promote(browser_client, engineer, approver, iris.versions.get(version=1), staging_local.environment, sent_tasks)
    req = promote(browser_client, engineer, approver, v3, staging_local.environment, sent_tasks)
    assert req.state == PromotionRequest.LIVE, req.state_reason  # the smoke predict passed
    deployment = Deployment.objects.get(model=iris)
    bad = deployment.live_rollout
    assert bad.guard_state == "watching"

    scrape_deployment(deployment.pk)  # the baseline
    report = loadgen.run(predict_sender(deployment.local_port), signature=v3.signature, rps=40, duration=1.5)
    assert report.errors == report.sent > 40
    scrape_deployment(deployment.pk)
    assert guard.guard_check_all() == {bad.pk: "breached"}
    sent_tasks.run_all()  # the automatic rollback

    bad.refresh_from_db()
    req.refresh_from_db()
    deployment.refresh_from_db()
    assert bad.state == Rollout.ROLLED_BACK and bad.guard_state == "breached"
    assert "error rate 100.0%" in bad.reason and "Rolled back to revision 1 (v1)" in bad.reason
    assert req.state == PromotionRequest.ROLLED_BACK and "Guard breached" in req.state_reason
    back = deployment.live_rollout
    assert back.kind == Rollout.AUTO_ROLLBACK and back.state == Rollout.LIVE and back.version.version == 1
    assert str(mlflow_store.client().get_model_version_by_alias("iris", "staging").version) == "1"
    after = loadgen.run(predict_sender(deployment.local_port), signature=v3.signature, rps=20, duration=0.5)
    assert after.errors == 0 and after.ok == after.sent
    assert AuditEvent.objects.filter(verb="rollout.guard_breached", object_id=str(bad.pk)).exists()
    page = browser_client(engineer).get(f"/rollouts/{bad.pk}/").content.decode()
    assert "Guard breached" in page
