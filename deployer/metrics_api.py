"""GET a deployment's traffic series as JSON: for the charts, and for CI or scripts."""

from datetime import timedelta

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from console import perms
from console.api import valid
from console.permissions import MethodPermissions
from deployer import selectors
from deployer.metrics.series import MAX_WINDOW, TRACKS, series


class SeriesQuery(serializers.Serializer):
    window = serializers.IntegerField(
        min_value=60, max_value=MAX_WINDOW, default=900, help_text="Seconds to look back (60 s to 7 days)."
    )
    step = serializers.IntegerField(
        min_value=10,
        max_value=86400,
        required=False,
        help_text="Seconds per point; rounded up to the stored resolution.",
    )
    track = serializers.ChoiceField(
        choices=TRACKS,
        required=False,
        help_text="One track's traffic during a canary release (stable or canary); "
        "without it, the whole deployment's (every track summed).",
    )


def rollout_events(deployment, since) -> list[dict]:
    """What happened to the deployment in the window, for markers on the charts."""
    events = []
    for rollout in selectors.rollouts_finished_since(deployment, since):
        assert rollout.finished_at is not None  # the selector filters on finished_at__gte
        events.append(
            {
                "t": int(rollout.finished_at.timestamp()),
                "revision": rollout.revision,
                "kind": rollout.kind,
                "state": rollout.state,
                "guard": rollout.guard_state,
                "version": rollout.version.version if rollout.version else None,
                "reason": rollout.reason[:300],
            }
        )
    return events


class DeploymentMetricsView(APIView):
    permission_classes = [MethodPermissions]
    permissions_by_method = {"GET": perms.VIEW_DEPLOYMENT}

    @extend_schema(
        summary="A deployment's request rate, errors, latency percentiles and replicas over time",
        parameters=[SeriesQuery],
        responses=OpenApiTypes.OBJECT,
    )
    def get(self, request, pk: int):
        query = valid(SeriesQuery, request.query_params)
        deployment = selectors.deployment_get(pk)
        now = timezone.now()
        data = series(deployment, query["window"], query.get("step"), now=now, track=query.get("track"))
        data["events"] = rollout_events(deployment, now - timedelta(seconds=query["window"]))
        return Response(data)
