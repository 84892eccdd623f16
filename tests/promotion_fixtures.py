import pytest
from django.contrib.auth.models import Group

from console.accounts.roles import ADMIN
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


@pytest.fixture
def protected(production):
    """Production, protected: a policy change waits for a second admin."""
    Environment.objects.filter(pk=production.pk).update(protected=True, metric_thresholds=[], require_previous=False)
    production.refresh_from_db()
    return production


@pytest.fixture
def second_admin(django_user_model, admin_user):
    user = django_user_model.objects.create_user("bea-admin", password="pw-bea", is_staff=True)
    user.groups.add(Group.objects.get(name=ADMIN))
    return user


def settings_form(env: Environment, **changes) -> dict:
    """The environment's settings page as it is filled in now, with ``changes``; a field left
    empty is not sent, as a browser sends no unchecked box."""
    data = {
        "name": env.name,
        "position": env.position,
        "alias": env.alias,
        "protected": "on" if env.protected else "",
        "require_previous": "on" if env.require_previous else "",
        "required_approvals": env.required_approvals,
        "approver_group": env.approver_group_id or "",
        "request_ttl_hours": env.request_ttl_hours,
        "thresholds": "",
        "webhook_url": "",
        "require_signature": "on",
        "require_servable": "on",
        "require_compatible_signature": "on",
        "rollout_strategy": env.rollout_strategy,
        "canary_min_requests": 100,
        "canary_inconclusive": "wait",
        "canary_max_error_rate_increase_pp": 1.0,
        "canary_max_p95_ratio": 1.5,
    }
    data.update(changes)
    return {k: v for k, v in data.items() if v != ""}
