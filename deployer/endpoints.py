"""Where clients call a deployment, like KServe's ``status.url``: pure functions of the
deployment, its target and model, with no I/O.

- local backend: the model server on this machine, ``http://127.0.0.1:<port>``;
- Kubernetes: the Service that ``manifests.service`` renders, by its in-cluster DNS name
  (``<service>.<namespace>.svc.cluster.local``, the default cluster domain) on TF Serving's
  REST port;
- either, when the target sets ``external_base_url``: that base URL, for clients outside
  the cluster (an ingress or gateway the operator runs forwards the path to the Service).

The path names the environment's version label (``/v1/models/<name>/labels/<environment>``),
which ``manifests.models_config`` puts on the version that serves: a client keeps calling the
same URL while rollouts and rollbacks move the label.
"""

from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.core.validators import URLValidator

from deployer import tfserving
from deployer.manifests import resource_name

if TYPE_CHECKING:
    from deployer.models import Deployment

CLUSTER_DOMAIN = "cluster.local"


@dataclass(frozen=True)
class Endpoint:
    url: str | None  # None while nothing serves
    external_url: str | None  # None unless the target sets external_base_url


def model_path(model: str, environment: str) -> str:
    """TF Serving's REST path of a model by its environment's label (append ``:predict``)."""
    return tfserving.model_path(model, label=environment)


def base_url_problem(value: str) -> str | None:
    """Why ``value`` cannot be an external base URL, or None: an http(s) URL with a host and
    no credentials, query or fragment (a path prefix is fine)."""
    try:
        URLValidator(schemes=["http", "https"])(value)
    except ValidationError:
        return "An http:// or https:// URL, e.g. https://models.example.com."
    parts = urlsplit(value)
    if parts.username or parts.password:
        return "Leave credentials out of the URL: it is shown to every viewer."
    if parts.query or parts.fragment or value.endswith(("?", "#")):
        return "A base URL without '?' or '#': the model's path is appended to it."
    return None


def endpoint(deployment: "Deployment") -> Endpoint:
    """The deployment's URLs; ``url`` only while it serves (undeployed, there is nothing to call)."""
    if deployment.state != deployment.SERVING:
        return Endpoint(url=None, external_url=None)
    target = deployment.target
    environment = target.environment.name
    path = model_path(deployment.model.name, environment)
    external = f"{target.external_base_url.rstrip('/')}{path}" if target.external_base_url else None
    if target.backend == target.LOCAL:
        url = f"http://127.0.0.1:{deployment.local_port}{path}" if deployment.local_port else None
    else:
        service = resource_name(deployment.model.name, environment)
        url = f"http://{service}.{target.namespace}.svc.{CLUSTER_DOMAIN}:{tfserving.REST_PORT}{path}"
    return Endpoint(url=url, external_url=external)
