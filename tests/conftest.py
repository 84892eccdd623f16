"""The fixed cast and the MLflow store for the tests that ask for it.

MLflow is never mocked: a real SQLite-backed MLflow store with real TensorFlow
SavedModels is built once (tests/built_once.py: kept between runs, shared by the xdist
workers), and each test that asks for `mlflow_store` gets its own copy of it, so tests
can create, change and delete freely without seeing each other. Tests that don't ask pay
nothing for it: their MLflow points at a closed port, so one that needs MLflow and forgot
the fixture fails at once instead of writing into var/.
"""

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pytest
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import Group
from django.core.cache import cache
from rest_framework.test import APIClient

from console.accounts.roles import ADMIN, APPROVER, ENGINEER, VIEWER, ensure_roles
from console.accounts.services import token_create
from registry import demo_training
from registry.demo_training import LoggedModel, log_model
from tests.built_once import built_once


@dataclass(frozen=True)
class MlflowTemplate:
    db: Path
    artifacts: Path
    models: list[LoggedModel]  # two tensorflow-flavour SavedModels, with signatures
    unsigned: LoggedModel  # logged without an MLmodel signature


def _build_template(root: Path) -> dict:
    uri = f"sqlite:///{root / 'mlflow.db'}"
    common = {"tracking_uri": uri, "experiment": "tests", "artifact_location": (root / "artifacts").as_uri()}
    models = [
        log_model(seed=1, metrics={"accuracy": 0.91}, **common),
        log_model(seed=2, metrics={"accuracy": 0.95}, **common),
    ]
    unsigned = log_model(seed=3, metrics={"accuracy": 0.5}, with_signature=False, **common)
    return {"models": [m.__dict__ for m in models], "unsigned": unsigned.__dict__}


@pytest.fixture(scope="session")
def mlflow_template(request, tmp_path_factory) -> MlflowTemplate:
    # Trained and logged once, then kept between runs (tests/built_once.py): under xdist the
    # first worker to get here builds it, the others wait and reuse it.
    root, built = built_once(
        request.config, tmp_path_factory, "mlflow-template", _build_template, sources=(_build_template, demo_training)
    )
    return MlflowTemplate(
        db=root / "mlflow.db",
        artifacts=root / "artifacts",
        models=[LoggedModel(**m) for m in built["models"]],
        unsigned=LoggedModel(**built["unsigned"]),
    )


@dataclass
class Store:
    uri: str
    artifacts: Path
    allowed: Path
    template: MlflowTemplate

    def client(self) -> mlflow.MlflowClient:
        return mlflow.MlflowClient(self.uri, self.uri)


NO_MLFLOW = "http://127.0.0.1:9"  # the discard port: nothing listens, so a call fails at once


@pytest.fixture(autouse=True)
def _no_mlflow_unless_asked(settings, monkeypatch, request):
    settings.MLFLOW_TRACKING_URI = settings.MLFLOW_REGISTRY_URI = NO_MLFLOW
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    if request.node.get_closest_marker("django_db"):
        # The cache is a database table (API throttle counts, run metrics) that a
        # transactional test's flush does not empty: each test starts with none.
        cache.clear()
    mlflow.set_tracking_uri(NO_MLFLOW)


@pytest.fixture
def mlflow_store(_no_mlflow_unless_asked, settings, tmp_path, mlflow_template) -> Store:
    db = tmp_path / "mlflow.db"
    shutil.copy(mlflow_template.db, db)
    uri = f"sqlite:///{db}"
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    settings.MLFLOW_TRACKING_URI = settings.MLFLOW_REGISTRY_URI = uri
    settings.MLFLOW_ARTIFACT_ROOT = mlflow_template.artifacts.as_uri()
    settings.MODELGATE_ALLOWED_SOURCE_ROOTS = [mlflow_template.artifacts.as_uri(), allowed.as_uri()]
    # A user's own MLflow client in the same process would have this set too (MLflow's
    # registry store resolves models:/m-… sources through the global tracking URI).
    mlflow.set_tracking_uri(uri)
    return Store(uri=uri, artifacts=mlflow_template.artifacts, allowed=allowed, template=mlflow_template)


@pytest.fixture(autouse=True)
def _outages_forgotten():
    """Each test starts with every dependency up in this process's view (console.outages)."""
    from console import outages

    outages.reset()
    yield
    outages.reset()


@pytest.fixture(autouse=True)
def _token_cache_forgotten():
    """Each test starts with no token cached in this process (console/accounts/token_cache.py):
    a rolled-back test changes rows without the signals that would forget them."""
    from console.accounts import token_cache

    token_cache._entries.clear()
    yield
    token_cache._entries.clear()


@pytest.fixture
def celery_eager():
    """Run Celery tasks in this process as they are queued (Celery reads its settings once, so
    changing Django's CELERY_TASK_ALWAYS_EAGER after that would do nothing)."""
    from console.celery import app

    before = app.conf.task_always_eager
    app.conf.task_always_eager = True
    # Import every app's tasks module, as a worker does at start: a task queued by name
    # (registry.promotions.notify) runs here only if this process knows it.
    app.loader.import_default_modules()
    yield
    app.conf.task_always_eager = before


_password_hashes: dict[str, str] = {}


def _password_hash(username: str) -> str:
    """The hash of "pw-<username>", made once per process: the production hasher (PBKDF2, a
    million iterations) takes about a second a user on this machine, and the cast's passwords
    never change. Logging in still checks the password against it for real."""
    if username not in _password_hashes:
        _password_hashes[username] = make_password("pw-" + username)
    return _password_hashes[username]


def _member(django_user_model, username: str, role: str | None, **extra):
    ensure_roles()
    user = django_user_model.objects.create(username=username, password=_password_hash(username), **extra)
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
from tests.promotion_fixtures import iris, production, protected, second_admin, staging  # noqa: E402,F401
from tests.schedule import pytest_collection_modifyitems, pytest_runtest_logreport, pytest_sessionfinish  # noqa: E402,F401
from tests.summaries import SUMMARIES  # noqa: E402


def pytest_terminal_summary(terminalreporter):
    """Totals that tests report across xdist workers: the TF Serving conformance score ("N of
    M cases match"; strict xfails differ on purpose) and the property-based API run's totals."""
    outcomes: dict[str, bool] = {}
    for kind in ("passed", "failed", "xfailed", "xpassed", "error"):
        for report in terminalreporter.stats.get(kind, []):
            nodeid = getattr(report, "nodeid", "")
            if "test_tfserving_conformance.py" in nodeid:
                matched = kind == "passed" and report.when == "call"
                outcomes[nodeid] = outcomes.get(nodeid, True) and matched
    if outcomes:
        terminalreporter.write_line(f"TF Serving conformance: {sum(outcomes.values())} of {len(outcomes)} cases match")
    folder = terminalreporter.config._tmp_path_factory.getbasetemp() / SUMMARIES  # the controller's own
    parts = [json.loads(path.read_text()) for path in sorted(folder.glob("api-properties-*.json"))]
    if parts:
        roles: dict[str, int] = {}
        for part in parts:
            for role, count in part["roles"].items():
                roles[role] = roles.get(role, 0) + count
        operations = set().union(*(part["operations"] for part in parts))
        terminalreporter.write_sep("-", "schemathesis")
        terminalreporter.write_line(
            f"{sum(p['requests'] for p in parts)} generated requests over {len(operations)} operations, "
            f"{sum(p['server_errors'] for p in parts)} server errors (5xx); by role: "
            f"{', '.join(f'{k} {v}' for k, v in sorted(roles.items()))}"
        )
    _measured_summary(terminalreporter)


def _measured(terminalreporter) -> dict:
    """What tests recorded with record_property("measured", {name: value}) (tests/test_faults.py,
    tests/test_mixed_load.py): user_properties travel from xdist's workers to the controller."""
    figures = {}
    for report in terminalreporter.stats.get("passed", []) + terminalreporter.stats.get("failed", []):
        for key, value in getattr(report, "user_properties", ()):
            if key == "measured" and isinstance(value, dict):
                figures.update(value)
    return figures


def _measured_summary(terminalreporter):
    figures = _measured(terminalreporter)
    if not figures:
        return
    terminalreporter.section("measured (seconds unless named otherwise)")
    for name, value in figures.items():
        terminalreporter.write_line(f"{name}: {value}")
    path = terminalreporter.config._tmp_path_factory.getbasetemp() / "measured.json"
    path.write_text(json.dumps(figures, indent=2, sort_keys=True))
    terminalreporter.write_line(f"written to {path}")
