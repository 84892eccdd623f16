"""The fixed cast and the MLflow store every test gets.

MLflow is never mocked: a real SQLite-backed MLflow store with real TensorFlow
SavedModels is built once per session, and each test gets its own copy of it,
so tests can create, change and delete freely without seeing each other.
"""

import shutil
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pytest
from django.contrib.auth.models import Group
from django.core.cache import cache
from rest_framework.test import APIClient

from console.accounts.roles import ADMIN, APPROVER, ENGINEER, VIEWER, ensure_roles
from console.accounts.services import token_create
from registry.demo_training import LoggedModel, log_model


@dataclass(frozen=True)
class MlflowTemplate:
    db: Path
    artifacts: Path
    models: list[LoggedModel]  # two tensorflow-flavour SavedModels, with signatures
    unsigned: LoggedModel  # logged without an MLmodel signature


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory) -> MlflowTemplate:
    root = tmp_path_factory.mktemp("mlflow-template")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    artifacts = root / "artifacts"
    common = {"tracking_uri": uri, "experiment": "tests", "artifact_location": artifacts.as_uri()}
    models = [log_model(seed=1, metrics={"accuracy": 0.91}, **common),
              log_model(seed=2, metrics={"accuracy": 0.95}, **common)]
    unsigned = log_model(seed=3, metrics={"accuracy": 0.5}, with_signature=False, **common)
    return MlflowTemplate(db=root / "mlflow.db", artifacts=artifacts, models=models, unsigned=unsigned)


@dataclass
class Store:
    uri: str
    artifacts: Path
    allowed: Path
    template: MlflowTemplate

    def client(self) -> mlflow.MlflowClient:
        return mlflow.MlflowClient(self.uri, self.uri)


@pytest.fixture(autouse=True)
def mlflow_store(settings, tmp_path, mlflow_template) -> Store:
    db = tmp_path / "mlflow.db"
    shutil.copy(mlflow_template.db, db)
    uri = f"sqlite:///{db}"
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    settings.MLFLOW_TRACKING_URI = settings.MLFLOW_REGISTRY_URI = uri
    settings.MLFLOW_ARTIFACT_ROOT = mlflow_template.artifacts.as_uri()
    settings.MODELGATE_ALLOWED_SOURCE_ROOTS = [mlflow_template.artifacts.as_uri(), allowed.as_uri()]
    cache.clear()
    # A user's own MLflow client in the same process would have this set too (MLflow's
    # registry store resolves models:/m-… sources through the global tracking URI).
    mlflow.set_tracking_uri(uri)
    return Store(uri=uri, artifacts=mlflow_template.artifacts, allowed=allowed, template=mlflow_template)


@pytest.fixture
def celery_eager():
    """Run Celery tasks in this process as they are queued (Celery reads its settings once, so
    changing Django's CELERY_TASK_ALWAYS_EAGER after that would do nothing)."""
    from console.celery import app

    before = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = before


def _member(django_user_model, username: str, role: str | None, **extra):
    ensure_roles()
    user = django_user_model.objects.create_user(username=username, password="pw-" + username, **extra)
    if role:
        user.groups.add(Group.objects.get(name=role))
    return user


@pytest.fixture
def viewer(django_user_model):
    return _member(django_user_model, "vera-viewer", VIEWER)


@pytest.fixture
def engineer(django_user_model):
    return _member(django_user_model, "eli-engineer", ENGINEER)


@pytest.fixture
def approver(django_user_model):
    return _member(django_user_model, "ada-approver", APPROVER)


@pytest.fixture
def admin_user(django_user_model):
    return _member(django_user_model, "ari-admin", ADMIN, is_staff=True)


@pytest.fixture
def nobody(django_user_model):
    """Logged in, but in no role: may read nothing."""
    return _member(django_user_model, "noel-nobody", None)


def token_client(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_create(user=user, name='tests').raw}")
    return client


@pytest.fixture
def api():
    """api(user) -> an APIClient that sends that user's bearer token."""
    return token_client


@pytest.fixture
def browser_client(client):
    """browser_client(user) -> Django's test client logged in as that user."""

    def login(user):
        client.force_login(user)
        return client

    return login


from tests.browser_fixtures import browser, login, pytest_runtest_makereport, worker  # noqa: E402,F401
from tests.deployer_fixtures import local_root, production_local, sent_tasks, staging_local  # noqa: E402,F401
from tests.promotion_fixtures import iris, production, staging  # noqa: E402,F401


def pytest_terminal_summary(terminalreporter):
    """The property-based API run's totals (tests/test_api_properties.py), when it ran."""
    import sys

    module = sys.modules.get("tests.test_api_properties") or sys.modules.get("test_api_properties")
    if module is None or not module.STATS["requests"]:
        return
    stats = module.STATS
    terminalreporter.write_sep("-", "schemathesis")
    terminalreporter.write_line(f"{stats['requests']} generated requests over {len(stats['operations'])} "
                                f"operations, {stats['server_errors']} server errors (5xx); by role: "
                                f"{', '.join(f'{k} {v}' for k, v in sorted(stats['roles'].items()))}")
