"""Fixtures shared by the fake API server's tests and the Kubernetes backend's tests.

Pods serve the conftest's MLflow models: versions 1 and 2 are the two real TF SavedModels
logged to the session's MLflow template; version 3 has a corrupt saved_model.pb, so it cannot
load. The init container's fetch copies them as the real one lays a download out.
"""

import shutil
from pathlib import Path
from urllib.parse import unquote, urlsplit

import kubernetes_validate
import pytest

from deployer import manifests as m

from . import crds
from .server import FakeKubeApiServer

K8S_VERSION = "1.33.0"
NAMESPACE = "ml-staging"
TARGET = m.Target(
    namespace=NAMESPACE,
    image="tensorflow/serving:2.19.0",
    fetcher_image="ghcr.io/acme/mlflow:3.5",
    mlflow_tracking_uri="http://mlflow:5000",
)
NAME = m.resource_name("iris", "staging")
BROKEN = 3


def release(version: int, rollout_id: int | None = None) -> m.Release:
    return m.Release(
        model="iris",
        version=version,
        environment="staging",
        rollout_id=rollout_id or version,
        savedmodel_path="tf2model",
    )


def valid(objects: list[dict]) -> list[dict]:
    """Each object checked against the Kubernetes schemas (strict), an HTTPRoute against its
    CRD's: whatever the tests apply is something a real API server would accept."""
    for obj in objects:
        if obj["kind"] == "HTTPRoute":
            crds.validate(obj)
        else:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    return objects


def rendered(version: int, target: m.Target = TARGET, **release_fields) -> list[dict]:
    """manifests.render, each object checked (valid) first."""
    return valid(m.render(target, release(version, **release_fields)))


@pytest.fixture(scope="session")
def savedmodels(mlflow_template, tmp_path_factory) -> dict[int, Path]:
    broken = tmp_path_factory.mktemp("broken-savedmodel")
    (broken / "saved_model.pb").write_bytes(b"not a protobuf \x00\xff\xfe")
    found = {}
    for version, logged in enumerate(mlflow_template.models, start=1):
        found[version] = Path(unquote(urlsplit(logged.artifact_uri).path)) / "tf2model"
        assert (found[version] / "saved_model.pb").is_file(), found[version]
    return {**found, BROKEN: broken}


@pytest.fixture
def fetched() -> list:
    """(model, version) of every fetch the pods' init containers made."""
    return []


@pytest.fixture
def fetch_model(savedmodels, fetched):
    def fetch(model: str, version: int, model_root: str) -> None:
        fetched.append((model, version))
        if version not in savedmodels:
            raise FileNotFoundError(f"models:/{model}/{version} has no artifacts")
        target = Path(model_root) / model / str(version)
        if target.is_dir():
            return
        staging = target.parent / f".incoming-{version}"
        shutil.copytree(savedmodels[version], staging)
        staging.rename(target)

    return fetch


@pytest.fixture
def kube(fetch_model, tmp_path):
    with FakeKubeApiServer(fetch_model=fetch_model, workdir=tmp_path / "cluster") as server:
        yield server


@pytest.fixture
def kubeconfig(kube, tmp_path) -> Path:
    return kube.write_kubeconfig(tmp_path / "kubeconfig", namespace=NAMESPACE)
