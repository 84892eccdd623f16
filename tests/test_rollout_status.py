"""kubectl's cases for `rollout status` (rollout_status_test.go), table-tested."""

import pytest

from deployer.rollout_status import RolloutFailed, deployment_status


def deployment(*, generation=1, observed=1, replicas=1, updated=1, current=1, available=1, conditions=()):
    return {"metadata": {"name": "foo", "generation": generation},
            "spec": {"replicas": replicas},
            "status": {"observedGeneration": observed, "replicas": current, "updatedReplicas": updated,
                       "availableReplicas": available, "conditions": list(conditions)}}


@pytest.mark.parametrize("kwargs, done, message", [
    (dict(generation=0, observed=1, replicas=1, current=1, updated=0, available=1), False,
     'Waiting for deployment "foo" rollout to finish: 0 out of 1 new replicas have been updated...'),
    (dict(generation=1, observed=1, replicas=1, current=2, updated=1, available=2), False,
     'Waiting for deployment "foo" rollout to finish: 1 old replicas are pending termination...'),
    (dict(generation=1, observed=1, replicas=2, current=2, updated=2, available=1), False,
     'Waiting for deployment "foo" rollout to finish: 1 of 2 updated replicas are available...'),
    (dict(generation=1, observed=1, replicas=2, current=2, updated=2, available=2), True,
     'deployment "foo" successfully rolled out'),
    (dict(generation=2, observed=1, replicas=2, current=2, updated=2, available=2), False,
     "Waiting for deployment spec update to be observed..."),
    (dict(generation=1, observed=1, replicas=0, current=0, updated=0, available=0), True,
     'deployment "foo" successfully rolled out'),
])
def test_kubectl_cases(kwargs, done, message):
    status = deployment_status(deployment(**kwargs))
    assert (status.done, status.message) == (done, message)


def test_progress_deadline_exceeded_fails_the_rollout():
    stuck = deployment(replicas=2, updated=1, available=1,
                       conditions=[{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}])
    with pytest.raises(RolloutFailed, match='deployment "foo" exceeded its progress deadline'):
        deployment_status(stuck)


def test_a_progressing_condition_that_is_fine_does_not_fail():
    ok = deployment(conditions=[{"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}])
    assert deployment_status(ok).done


def test_missing_status_fields_count_as_zero():
    fresh = {"metadata": {"name": "foo", "generation": 1}, "spec": {"replicas": 1}, "status": {"observedGeneration": 1}}
    assert deployment_status(fresh).message.endswith("0 out of 1 new replicas have been updated...")
