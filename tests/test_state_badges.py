"""States carry their badge colour (console.choices.BadgeChoices) and one template tag,
``state_badge``, renders every one of them through includes/badge.html (issue 14)."""

import gc

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.template import Context, Template
from django.utils import timezone

from console.choices import COLOURS, BadgeChoices, badge_choice_sets
from deployer.models import Deployment, Rollout
from registry.models import ModelVersion, RegisteredModel
from registry.promotions.models import PromotionRequest, WebhookDelivery

# Every state the pages show as a badge. A set missing here would never be checked below.
EXPECTED_SETS = {
    "PromotionState",
    "GateResult",
    "ReviewDecision",
    "PolicyChangeState",
    "DeliveryState",
    "VersionStatus",
    "ConversionState",
    "Servability",
    "RunStatus",
    "DeploymentState",
    "DriftState",
    "Health",
    "RolloutState",
    "StepState",
    "PodReadiness",
    "TokenState",
}


def _render(source: str, **context) -> str:
    return Template("{% load console_extras %}" + source).render(Context(context))


def test_every_state_choice_set_is_a_badge_choice_set():
    assert EXPECTED_SETS <= set(badge_choice_sets())


@pytest.mark.parametrize("name", sorted(EXPECTED_SETS))
def test_every_member_of_every_choice_set_has_a_colour_and_a_label(name):
    choices = badge_choice_sets()[name]
    for member in choices:
        assert member.colour in COLOURS, f"{name}.{member.name}"
        assert member.badge_class == f"badge-{member.colour}"
        assert member.label


@pytest.mark.parametrize(
    "field, choices",
    [
        (PromotionRequest._meta.get_field("state"), "PromotionState"),
        (WebhookDelivery._meta.get_field("state"), "DeliveryState"),
        (ModelVersion._meta.get_field("status"), "VersionStatus"),
        (ModelVersion._meta.get_field("conversion_state"), "ConversionState"),
        (Deployment._meta.get_field("state"), "DeploymentState"),
        (Deployment._meta.get_field("drift_state"), "DriftState"),
        (Rollout._meta.get_field("state"), "RolloutState"),
    ],
)
def test_a_model_field_offers_exactly_its_badge_choice_set(field, choices):
    assert list(field.choices) == badge_choice_sets()[choices].choices


def test_a_colour_the_stylesheet_does_not_define_is_refused_when_the_class_is_defined():
    with pytest.raises(ValueError, match="colour 'purple'"):

        class Misdrawn(BadgeChoices):
            ODD = "odd", "purple", "Odd"

    gc.collect()  # the half-made class must not stay among the subclasses


def test_the_tag_renders_the_label_in_the_colour_of_its_state():
    html = _render('{% state_badge state "PromotionState" %}', state="pending_approval")
    assert html.endswith('<span class="badge badge-warning">Pending approval</span>\n')


def test_the_tag_carries_a_title_when_given_one():
    html = _render('{% state_badge s "VersionStatus" title=note %}', s="FAILED_REGISTRATION", note="bad <MLmodel>")
    assert '<span class="badge badge-error" title="bad &lt;MLmodel&gt;">Failed registration</span>' in html


def test_a_value_the_set_does_not_know_shows_as_itself_muted():
    html = _render('{% state_badge s "RolloutState" %}', s="paused")
    assert '<span class="badge badge-muted">paused</span>' in html


def test_a_choice_set_name_nobody_defines_is_an_error():
    with pytest.raises(LookupError, match="NoSuchState"):
        _render('{% state_badge s "NoSuchState" %}', s="x")


def test_two_choice_sets_with_one_name_are_refused():
    class PromotionState(BadgeChoices):  # the name of the real one
        X = "x", "ok", "X"

    try:
        with pytest.raises(ImproperlyConfigured, match="PromotionState"):
            badge_choice_sets()
    finally:
        del PromotionState
        gc.collect()
    assert badge_choice_sets()["PromotionState"] is PromotionRequest.State


@pytest.mark.django_db
def test_the_promotion_list_shows_each_request_state_as_its_badge(browser_client, viewer, engineer, staging):
    now = timezone.now()
    model = RegisteredModel.objects.create(name="iris", created_at=now, updated_at=now)
    version = ModelVersion.objects.create(
        model=model, version=1, source="models:/iris/1", created_at=now, updated_at=now
    )
    PromotionRequest.objects.create(
        model=model, version=version, environment=staging, requested_by=engineer, justification="j", state="deploying"
    )
    html = browser_client(viewer).get("/promotions/").content.decode()
    assert '<span class="badge badge-blue">Deploying</span>' in html
