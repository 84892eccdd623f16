"""Property-based tests of the whole API (issue 11, point 7): schemathesis generates requests
for every operation in the OpenAPI schema, valid and invalid, and sends them through the WSGI
app with a bearer token of each role. No request may get a 5xx, and every response must match
the schema (status codes, content type, body), error responses included (console/schema.py).

The totals are printed at the end of the run (tests/conftest.py, pytest_terminal_summary).
"""

import itertools
import json
import os

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, Phase, settings
from rest_framework.views import APIView
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from console.accounts.services import token_create
from registry.promotions.models import Environment
from tests import factories
from tests.soak import sized
from tests.summaries import summary_dir

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("mlflow_store")]

EXAMPLES_PER_OPERATION = sized(short=25, soak=170)  # tests/soak.py
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
STATS = {"requests": 0, "server_errors": 0, "operations": set(), "roles": {}}

schema = schemathesis.openapi.from_dict(SchemaGenerator().get_schema(request=None, public=True))
schema.app = get_wsgi_application()


ROLES = ("viewer", "engineer", "approver", "admin_user")


@pytest.fixture(scope="module", autouse=True)
def _report_totals(tmp_path_factory):
    """The totals go to a file the terminal summary reads (tests/conftest.py): under xdist the
    summary is printed by another process than the one that ran these tests."""
    yield
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    (summary_dir(tmp_path_factory) / f"api-properties-{worker}.json").write_text(
        json.dumps({**STATS, "operations": sorted(STATS["operations"])})
    )


@pytest.fixture
def role_tokens(request, engineer, monkeypatch):
    """A bearer token for each role; the examples of one operation take turns with them."""
    # Throttling (DRF, per token) would answer 429s that say nothing about the input.
    monkeypatch.setattr(APIView, "get_throttles", lambda self: [])
    # As Django's own test client does: a request must not close the test's database connection.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    request.addfinalizer(
        lambda: (
            signals.request_started.connect(close_old_connections),
            signals.request_finished.connect(close_old_connections),
        )
    )
    Environment.objects.create(name="staging", position=1, alias="staging", required_approvals=1)
    factories.model(actor=engineer, name="iris", tags={"team": "search"})
    tokens = [(role, token_create(user=request.getfixturevalue(role), name="schemathesis").raw) for role in ROLES]
    return itertools.cycle(tokens)


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.generate],
)
def test_every_operation_answers_within_its_schema_and_never_with_a_5xx(case, role_tokens):
    role, token = next(role_tokens)
    response = case.call(headers={"Authorization": f"Bearer {token}"})
    STATS["requests"] += 1
    STATS["roles"][role] = STATS["roles"].get(role, 0) + 1
    STATS["operations"].add(case.operation.label)
    if response.status_code >= 500:
        STATS["server_errors"] += 1
    case.validate_response(response, checks=CHECKS)
