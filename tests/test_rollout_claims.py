"""Claims and leases: one running rollout per deployment, in order, and a dead worker's
rollout is taken over only after its lease ran out."""

from datetime import timedelta

import pytest
from django.utils import timezone

from deployer import services
from deployer.models import Rollout
from deployer.tasks import resume_rollouts

pytestmark = pytest.mark.django_db


@pytest.fixture
def deployment(iris, staging_local):
    return services.deployment_get_or_create(target=staging_local, model=iris)


def _rollout(deployment, revision, version, **fields):
    return Rollout.objects.create(
        deployment=deployment,
        revision=revision,
        version=version,
        steps=services.steps_for(services.REDEPLOY_STEPS),
        **fields,
    )


def test_a_queued_rollout_is_claimed_once(deployment, iris):
    rollout = _rollout(deployment, 1, iris.versions.get(version=1))
    assert services.rollout_claim(rollout_id=rollout.pk, worker="a") is not None
    assert services.rollout_claim(rollout_id=rollout.pk, worker="b") is None
    rollout.refresh_from_db()
    assert (rollout.state, rollout.worker, rollout.attempts) == (Rollout.RUNNING, "a", 1)


def test_a_later_rollout_waits_until_the_earlier_one_of_its_deployment_finishes(deployment, iris):
    first = _rollout(deployment, 1, iris.versions.get(version=1))
    second = _rollout(deployment, 2, iris.versions.get(version=2))
    assert services.rollout_claim(rollout_id=second.pk, worker="b") is None  # the first is older
    assert services.rollout_claim(rollout_id=first.pk, worker="a") is not None
    assert services.rollout_claim(rollout_id=second.pk, worker="b") is None  # the first is running
    services.rollout_finish(rollout_id=first.pk, state=Rollout.LIVE)
    assert services.rollout_claim(rollout_id=second.pk, worker="b") is not None


def test_a_running_rollout_is_taken_over_only_after_its_lease_expired(deployment, iris, settings):
    settings.DEPLOYER_LEASE_SECONDS = 30
    rollout = _rollout(
        deployment,
        1,
        iris.versions.get(version=1),
        state=Rollout.RUNNING,
        worker="dead",
        heartbeat_at=timezone.now() - timedelta(seconds=10),
        attempts=1,
    )
    assert services.rollout_claim(rollout_id=rollout.pk, worker="new") is None
    assert resume_rollouts() == []
    Rollout.objects.filter(pk=rollout.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=31))
    assert resume_rollouts() == [rollout.pk]
    claimed = services.rollout_claim(rollout_id=rollout.pk, worker="new")
    assert claimed is not None and claimed.attempts == 2 and claimed.worker == "new"


def test_a_heartbeat_from_a_worker_that_lost_the_rollout_is_refused(deployment, iris):
    rollout = _rollout(deployment, 1, iris.versions.get(version=1))
    services.rollout_claim(rollout_id=rollout.pk, worker="a")
    assert services.rollout_heartbeat(rollout_id=rollout.pk, worker="a")
    assert not services.rollout_heartbeat(rollout_id=rollout.pk, worker="b")


def test_resume_queues_rollouts_whose_message_was_lost(
    deployment, iris, sent_tasks, django_capture_on_commit_callbacks
):
    rollout = _rollout(deployment, 1, iris.versions.get(version=1))
    Rollout.objects.filter(pk=rollout.pk).update(created_at=timezone.now() - timedelta(minutes=5))
    with django_capture_on_commit_callbacks(execute=True):
        assert resume_rollouts() == [rollout.pk]
    assert sent_tasks == [("deployer.run_rollout", [rollout.pk])]
