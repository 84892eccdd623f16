"""kubectl's cases for `rollout status` (rollout_status_test.go), table-tested."""

import pytest

from deployer.rollout_status import RolloutFailed, deployment_status


def deployment(*, generation=1, observed=1, replicas=1, updated=1, current=1, available=1, conditions=()):
    return {
        "metadata": {"name": "foo", "generation": generation},
        "spec": {"replicas": replicas},
        "status": {
            "observedGeneration": observed,
            "replicas": current,
            "updatedReplicas": updated,
            "availableReplicas": available,
            "conditions": list(conditions),
        },
    }


@pytest.mark.parametrize(
    "kwargs, done, message",
    [
        (
            dict(generation=0, observed=1, replicas=1, current=1, updated=0, available=1),
            False,
            'Waiting for deployment "foo" rollout to finish: 0 out of 1 new replicas have been updated...',
        ),
        (
            dict(generation=1, observed=1, replicas=1, current=2, updated=1, available=2),
            False,
            'Waiting for deployment "foo" rollout to finish: 1 old replicas are pending termination...',
        ),
        (
            dict(generation=1, observed=1, replicas=2, current=2, updated=2, available=1),
            False,
            'Waiting for deployment "foo" rollout to finish: 1 of 2 updated replicas are available...',
        ),
        (
            dict(generation=1, observed=1, replicas=2, current=2, updated=2, available=2),
            True,
            'deployment "foo" successfully rolled out',
        ),
        (
            dict(generation=2, observed=1, replicas=2, current=2, updated=2, available=2),
            False,
            "Waiting for deployment spec update to be observed...",
        ),
        (
            dict(generation=1, observed=1, replicas=0, current=0, updated=0, available=0),
            True,
            'deployment "foo" successfully rolled out',
        ),
    ],
)
def test_kubectl_cases(kwargs, done, message):
    status = deployment_status(deployment(**kwargs))
    assert (status.done, status.message) == (done, message)


def test_progress_deadline_exceeded_fails_the_rollout():
    stuck = deployment(
        replicas=2,
        updated=1,
        available=1,
        conditions=[{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}],
    )
    with pytest.raises(RolloutFailed, match='deployment "foo" exceeded its progress deadline'):
        deployment_status(stuck)


def test_a_progressing_condition_that_is_fine_does_not_fail():
    ok = deployment(conditions=[{"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}])
    assert deployment_status(ok).done


def test_missing_status_fields_count_as_zero():
    fresh = {"metadata": {"name": "foo", "generation": 1}, "spec": {"replicas": 1}, "status": {"observedGeneration": 1}}
    assert deployment_status(fresh).message.endswith("0 out of 1 new replicas have been updated...")


# --- Modelgate's earlier verdicts: refused or stuck pods ---


def test_a_replica_failure_is_quoted_and_its_absence_or_false_status_is_not_a_failure():
    from deployer.rollout_status import replica_failure

    failing = {
        "type": "ReplicaFailure",
        "status": "True",
        "reason": "FailedCreate",
        "message": 'pods "foo-1" is forbidden: exceeded quota: pods',
    }
    assert (
        replica_failure(deployment(conditions=[failing]))
        == 'FailedCreate: pods "foo-1" is forbidden: exceeded quota: pods'
    )
    assert replica_failure(deployment(conditions=[{**failing, "status": "False"}])) is None
    assert replica_failure(deployment()) is None


def _pod(*, init=(), containers=(), conditions=()):
    return {
        "metadata": {"name": "foo-abc-1"},
        "status": {
            "initContainerStatuses": list(init),
            "containerStatuses": list(containers),
            "conditions": list(conditions),
        },
    }


def _container(name="tensorflow-serving", *, waiting=None, restarts=0, last=None, running=False):
    state = {"running": {}} if running else {"waiting": waiting or {}}
    return {"name": name, "state": state, "restartCount": restarts, "lastState": {"terminated": last} if last else {}}


CRASH = {"exitCode": 1, "reason": "Error", "message": "Loading servable failed: DATA_LOSS\n"}


@pytest.mark.parametrize(
    "pod, expected",
    [
        (
            _pod(containers=[_container(waiting={"reason": "CrashLoopBackOff"}, restarts=1, last=CRASH)]),
            "pod foo-abc-1: container tensorflow-serving is CrashLoopBackOff; last exit code 1 (Error): "
            "Loading servable failed: DATA_LOSS",
        ),
        # Between two back-offs the container runs again: still a crash loop once it failed twice.
        (
            _pod(containers=[_container(running=True, restarts=2, last=CRASH)]),
            "pod foo-abc-1: container tensorflow-serving is CrashLoopBackOff; last exit code 1 (Error): "
            "Loading servable failed: DATA_LOSS",
        ),
        (_pod(containers=[_container(running=True, restarts=1, last=CRASH)]), None),  # one crash may be bad luck
        (
            _pod(
                containers=[
                    _container(waiting={"reason": "ImagePullBackOff", "message": 'Back-off pulling image "tfs:9"'})
                ]
            ),
            'pod foo-abc-1: container tensorflow-serving is ImagePullBackOff; Back-off pulling image "tfs:9"',
        ),
        (
            _pod(
                init=[
                    _container(
                        "fetch-model",
                        waiting={"reason": "CrashLoopBackOff"},
                        restarts=3,
                        last={"exitCode": 2, "reason": "Error"},
                    )
                ]
            ),
            "pod foo-abc-1: init container fetch-model is CrashLoopBackOff; last exit code 2 (Error)",
        ),
        (
            _pod(
                conditions=[
                    {
                        "type": "PodScheduled",
                        "status": "False",
                        "reason": "Unschedulable",
                        "message": "0/3 nodes are available: 3 Insufficient memory.",
                    }
                ]
            ),
            "pod foo-abc-1 is Unschedulable: 0/3 nodes are available: 3 Insufficient memory.",
        ),
        (_pod(containers=[_container(waiting={"reason": "ContainerCreating"})]), None),
        (_pod(containers=[_container(waiting={"reason": "PodInitializing"})]), None),
    ],
)
def test_a_stuck_pod_says_why_and_a_slow_one_says_nothing(pod, expected):
    from deployer.rollout_status import pod_failure

    assert pod_failure(pod) == expected
