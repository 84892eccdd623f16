"""The resource types the fake serves, and what each allows.

Pods, ReplicaSets and Events are written only by the simulated controllers and kubelet, as
Modelgate never writes them; clients may read them (and delete pods, as an operator would).
HTTPRoutes are a custom resource: served only after `FakeKubeApiServer.install_gateway_api()`.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Resource:
    group: str  # "" for the core group
    version: str
    plural: str
    kind: str
    writable: bool = True  # create, apply, update
    deletable: bool = True
    generation: bool = False  # metadata.generation tracks .spec changes
    status_subresource: bool = False  # .status is ignored on writes to the main resource
    field_labels: tuple = ()  # fieldSelector keys beyond metadata.name and metadata.namespace
    crd: bool = False  # served only once its CustomResourceDefinition is installed

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """How the API server names the type in messages: `deployments.apps`, `configmaps`."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


RESOURCES = (
    Resource("", "v1", "configmaps", "ConfigMap"),
    Resource("", "v1", "services", "Service", status_subresource=True),
    Resource(
        "",
        "v1",
        "pods",
        "Pod",
        writable=False,
        status_subresource=True,
        field_labels=(
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "status.phase",
            "status.podIP",
        ),
    ),
    Resource(
        "",
        "v1",
        "events",
        "Event",
        writable=False,
        deletable=False,
        field_labels=(
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ),
    ),
    Resource("apps", "v1", "deployments", "Deployment", generation=True, status_subresource=True),
    Resource("apps", "v1", "replicasets", "ReplicaSet", writable=False, generation=True, status_subresource=True),
    Resource(
        "autoscaling",
        "v2",
        "horizontalpodautoscalers",
        "HorizontalPodAutoscaler",
        generation=True,
        status_subresource=True,
    ),
    # The Gateway API's route (CRD httproutes.gateway.networking.k8s.io, standard channel).
    Resource(
        "gateway.networking.k8s.io",
        "v1",
        "httproutes",
        "HTTPRoute",
        generation=True,
        status_subresource=True,
        crd=True,
    ),
)

_BY_PATH = {(r.group, r.version, r.plural): r for r in RESOURCES}
_BY_NAME = {**{r.kind.lower(): r for r in RESOURCES}, **{r.plural: r for r in RESOURCES}}


def by_path(group: str, version: str, plural: str) -> Resource | None:
    return _BY_PATH.get((group, version, plural))


def by_name(kind_or_plural: str) -> Resource:
    """Deployment, deployment or deployments: the test hooks accept any of them."""
    try:
        return _BY_NAME[kind_or_plural.lower()]
    except KeyError:
        raise KeyError(f"The fake API server has no resource {kind_or_plural!r}") from None
