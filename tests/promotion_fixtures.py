import pytest

from registry.promotions.models import Environment
from tests import factories


@pytest.fixture
def staging(db):
    return Environment.objects.create(name="staging", position=1, alias="staging", required_approvals=1)


@pytest.fixture
def production(db):
    return Environment.objects.create(
        name="production",
        position=2,
        alias="production",
        required_approvals=1,
        metric_thresholds=[{"metric": "accuracy", "op": ">=", "value": 0.92}],
    )


@pytest.fixture
def iris(engineer, mlflow_store):
    """iris v1 (accuracy 0.91) and v2 (accuracy 0.95), both servable with signatures."""
    model = factories.model(actor=engineer, name="iris")
    for logged in mlflow_store.template.models:
        factories.version(actor=engineer, model=model, logged=logged)
    return model
