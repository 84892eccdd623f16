"""A Deployment's status after one controller sync, as pure functions.

Ported from pkg/controller/deployment: calculateStatus (sync.go) counts pods from the
ReplicaSets' status, then syncRolloutStatus (progress.go) sets the Progressing condition that
`kubectl rollout status` reads for ProgressDeadlineExceeded.
"""

import copy

from .apply import now


def condition(status: dict, kind: str) -> dict | None:
    return next((c for c in status.get("conditions") or [] if c["type"] == kind), None)


def set_condition(status: dict, kind: str, value: str, reason: str, message: str) -> None:
    """SetDeploymentCondition: the same status and reason leave the condition, and its times, alone."""
    current = condition(status, kind)
    if current and current["status"] == value and current["reason"] == reason:
        return
    stamp = now()
    new = {
        "type": kind,
        "status": value,
        "lastUpdateTime": stamp,
        "lastTransitionTime": current["lastTransitionTime"] if current and current["status"] == value else stamp,
        "reason": reason,
        "message": message,
    }
    status["conditions"] = [c for c in status.get("conditions") or [] if c["type"] != kind] + [new]


def created(status: dict, rs_name: str) -> dict:
    """What getNewReplicaSet writes as soon as it creates a ReplicaSet: a new template restarts
    the progress clock, even after ProgressDeadlineExceeded."""
    status = copy.deepcopy(status)
    set_condition(status, "Progressing", "True", "NewReplicaSetCreated", f'Created new replica set "{rs_name}"')
    return status


def calculate(
    deployment: dict, new_rs: dict, old: list, *, max_unavailable: int, stalled_for: float
) -> tuple[dict, bool]:
    """(the next status, whether this sync saw progress). stalled_for is how many seconds ago
    progress was last seen; past spec.progressDeadlineSeconds without any, the rollout failed."""
    spec = deployment["spec"]
    previous = deployment.get("status") or {}
    desired = spec.get("replicas", 1)
    counts = _counts(new_rs, old)
    status = {
        "observedGeneration": deployment["metadata"].get("generation", 1),
        **{k: v for k, v in counts.items() if v},  # zero counts are omitted, as the API serializes them
        "conditions": copy.deepcopy(previous.get("conditions") or []),
    }
    if counts["availableReplicas"] >= desired - max_unavailable:
        set_condition(status, "Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
    else:
        set_condition(
            status, "Available", "False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability."
        )
    _replica_failures(status, new_rs, old)
    name = new_rs["metadata"]["name"]
    progressed = False
    if condition(status, "Progressing") is None:  # a Deployment whose progress nobody tracked yet
        set_condition(status, "Progressing", "True", "FoundNewReplicaSet", f'Found new replica set "{name}"')
        progressed = True
    current = condition(status, "Progressing")
    if counts["replicas"] == counts["updatedReplicas"] and current["reason"] == "NewReplicaSetAvailable":
        return status, progressed  # finished earlier: nothing to estimate
    if counts["updatedReplicas"] == counts["replicas"] == counts["availableReplicas"] == desired:
        set_condition(
            status, "Progressing", "True", "NewReplicaSetAvailable", f'ReplicaSet "{name}" has successfully progressed.'
        )
    elif _made_progress(previous, counts):
        # Unlike set_condition, progress with the same reason still moves lastUpdateTime.
        stamp = now()
        status["conditions"] = [c for c in status["conditions"] if c["type"] != "Progressing"] + [
            {
                "type": "Progressing",
                "status": "True",
                "lastUpdateTime": stamp,
                "lastTransitionTime": current["lastTransitionTime"] if current["status"] == "True" else stamp,
                "reason": "ReplicaSetUpdated",
                "message": f'ReplicaSet "{name}" is progressing.',
            }
        ]
        progressed = True
    elif _timed_out(spec, current, stalled_for):
        set_condition(
            status,
            "Progressing",
            "False",
            "ProgressDeadlineExceeded",
            f'ReplicaSet "{name}" has timed out progressing.',
        )
    return status, progressed


def _replica_failures(status: dict, new_rs: dict, old: list) -> None:
    """progress.go syncRolloutStatus + getReplicaFailures: the new ReplicaSet's ReplicaFailure
    condition (else an old one's) is copied onto the Deployment (util.ReplicaSetToDeploymentCondition:
    both times are the ReplicaSet condition's lastTransitionTime); none left, it is removed."""
    found = next(
        (
            c
            for rs in [new_rs, *old]
            for c in (rs.get("status") or {}).get("conditions") or []
            if c["type"] == "ReplicaFailure"
        ),
        None,
    )
    if found is None:
        status["conditions"] = [c for c in status["conditions"] if c["type"] != "ReplicaFailure"]
        return
    current = condition(status, "ReplicaFailure")
    if current and current["status"] == found["status"] and current["reason"] == found["reason"]:
        return  # SetDeploymentCondition leaves an unchanged condition alone
    status["conditions"] = [c for c in status["conditions"] if c["type"] != "ReplicaFailure"] + [
        {
            "type": "ReplicaFailure",
            "status": found["status"],
            "lastUpdateTime": found["lastTransitionTime"],
            "lastTransitionTime": found["lastTransitionTime"],
            "reason": found["reason"],
            "message": found["message"],
        }
    ]


def _counts(new_rs: dict, old: list) -> dict:
    every = old + [new_rs]

    def total(field):
        return sum((rs.get("status") or {}).get(field, 0) for rs in every)

    counts = {
        "replicas": total("replicas"),
        "updatedReplicas": (new_rs.get("status") or {}).get("replicas", 0),
        "readyReplicas": total("readyReplicas"),
        "availableReplicas": total("availableReplicas"),
    }
    # Unavailable counts against what the ReplicaSets ask for, not what exists.
    counts["unavailableReplicas"] = max(
        0, sum(rs["spec"].get("replicas", 0) for rs in every) - counts["availableReplicas"]
    )
    return counts


def _made_progress(previous: dict, counts: dict) -> bool:
    """DeploymentProgressing: more updated, ready or available pods, or fewer old ones."""
    old_before = previous.get("replicas", 0) - previous.get("updatedReplicas", 0)
    old_now = counts["replicas"] - counts["updatedReplicas"]
    return (
        counts["updatedReplicas"] > previous.get("updatedReplicas", 0)
        or old_now < old_before
        or counts["readyReplicas"] > previous.get("readyReplicas", 0)
        or counts["availableReplicas"] > previous.get("availableReplicas", 0)
    )


def _timed_out(spec: dict, current: dict, stalled_for: float) -> bool:
    """DeploymentTimedOut, measured in real seconds rather than the condition's whole-second
    lastUpdateTime, so tests can use deadlines of a second or two."""
    deadline = spec.get("progressDeadlineSeconds")
    if deadline is None or current["reason"] == "NewReplicaSetAvailable":
        return False
    return current["reason"] == "ProgressDeadlineExceeded" or stalled_for > deadline
