"""The hand-over from approval to deployment survives a broker outage: the approval answers
200, nothing queued after it is lost because one callback failed, and the periodic sweep
gives every approved request without a rollout exactly one."""

from datetime import timedelta

import pytest
from django.utils import timezone
from kombu.exceptions import OperationalError

from console import outages
from console.celery import app
from deployer.models import Rollout
from deployer.tasks import resume_rollouts
from registry.promotions import services
from registry.promotions.models import PromotionRequest

pytestmark = pytest.mark.django_db
R = PromotionRequest
API = "/api/v1/promotions/"


@pytest.fixture
def broker(monkeypatch, sent_tasks):
    """The broker as the code sees it: ``down`` names the task prefixes whose send raises."""

    class Broker:
        down: tuple[str, ...] = ()  # the broker refuses connections
        broken: tuple[str, ...] = ()  # a bug in the send (e.g. an argument it cannot serialize)

    broker = Broker()
    recording = app.send_task

    def send_task(name, args=None, kwargs=None, **options):
        if name.startswith(broker.down):
            raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
        if name.startswith(broker.broken):
            raise TypeError("Object of type Decimal is not JSON serializable")
        return recording(name, args=args, kwargs=kwargs, **options)

    monkeypatch.setattr(app, "send_task", send_task)
    return broker


def _pending(engineer, iris, staging):
    return services.promotion_request(
        actor=engineer, version=iris.versions.get(version=2), environment=staging, justification="j"
    )


def test_a_failing_notification_does_not_stop_the_deployment_queued_after_it(
    api, engineer, approver, iris, staging_local, broker, sent_tasks, django_capture_on_commit_callbacks
):
    req = _pending(engineer, iris, staging_local.environment)
    broker.broken = ("promotions.",)  # the e-mail and webhook sends fail
    with django_capture_on_commit_callbacks(execute=True):
        response = api(approver).post(f"{API}{req.pk}/approve/", {"comment": "go"}, format="json")
    assert response.status_code == 200, response.json()
    assert sent_tasks == [("deployer.deploy_promotion", [req.pk])]


def test_an_approval_during_a_broker_outage_answers_200_and_the_sweep_deploys_it_once(
    api, engineer, approver, iris, staging_local, broker, sent_tasks, settings, django_capture_on_commit_callbacks
):
    settings.DEPLOYER_HANDOVER_GRACE_SECONDS = 30
    req = _pending(engineer, iris, staging_local.environment)
    broker.down = ("",)  # every send fails
    with django_capture_on_commit_callbacks(execute=True):
        response = api(approver).post(f"{API}{req.pk}/approve/", {"comment": "go"}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["state"] == R.APPROVED
    assert sent_tasks == []

    broker.down = ()
    outages.reset()  # the broker is back (this process would notice on its next send)
    with django_capture_on_commit_callbacks(execute=True):
        assert resume_rollouts() == []  # within the grace period the message may still be on its way
    assert not Rollout.objects.filter(request=req).exists()

    PromotionRequest.objects.filter(pk=req.pk).update(updated_at=timezone.now() - timedelta(seconds=31))
    with django_capture_on_commit_callbacks(execute=True):
        queued = resume_rollouts()
    rollout = Rollout.objects.get(request=req)
    assert queued == [rollout.pk]
    assert sent_tasks == [("deployer.run_rollout", [rollout.pk])]
    assert PromotionRequest.objects.get(pk=req.pk).state == R.DEPLOYING

    with django_capture_on_commit_callbacks(execute=True):
        assert resume_rollouts() == []
    assert Rollout.objects.filter(request=req).count() == 1


def test_the_late_message_finds_the_rollout_the_sweep_made(
    engineer, approver, iris, staging_local, sent_tasks, settings, django_capture_on_commit_callbacks
):
    from deployer.services import rollout_for_promotion

    settings.DEPLOYER_HANDOVER_GRACE_SECONDS = 0
    req = _pending(engineer, iris, staging_local.environment)
    services.promotion_approve(actor=approver, request_id=req.pk)
    PromotionRequest.objects.filter(pk=req.pk).update(updated_at=timezone.now() - timedelta(seconds=1))
    with django_capture_on_commit_callbacks(execute=True):
        [swept] = resume_rollouts()
    assert rollout_for_promotion(request_id=req.pk) == swept  # the deploy_promotion task arriving late
    assert Rollout.objects.filter(request=req).count() == 1


def test_a_deploying_request_whose_rollout_is_gone_gets_one(
    engineer, approver, iris, staging_local, sent_tasks, settings, django_capture_on_commit_callbacks
):
    settings.DEPLOYER_HANDOVER_GRACE_SECONDS = 30
    req = _pending(engineer, iris, staging_local.environment)
    services.promotion_approve(actor=approver, request_id=req.pk)
    services.promotion_start_deploying(request_id=req.pk)  # the worker claimed it, then died
    PromotionRequest.objects.filter(pk=req.pk).update(updated_at=timezone.now() - timedelta(minutes=5))
    with django_capture_on_commit_callbacks(execute=True):
        queued = resume_rollouts()
    assert queued == [Rollout.objects.get(request=req).pk]
    assert sent_tasks == [("deployer.run_rollout", queued)]
