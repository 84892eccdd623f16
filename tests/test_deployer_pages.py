"""The deployment pages: the list, one deployment with its history and verbs, one rollout's
steps (live while it runs), and the steps on the promotion request page.

Deployments and rollouts are written directly here: these pages read rows, and the rows
look as the pipeline leaves them (tests/test_rollout_local.py runs the real pipeline)."""

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from deployer.models import Deployment, Rollout
from registry.models import ModelVersion, RegisteredModel
from registry.promotions.models import Environment, PromotionRequest, Review

pytestmark = pytest.mark.django_db

SIGNATURE = {
    "inputs": [{"name": "x", "dtype": "float32", "shape": [-1, 4]}],
    "outputs": [{"name": "y", "dtype": "float32", "shape": [-1, 3]}],
}
MANIFEST = {
    "apiVersion": "modelgate.io/v1",
    "kind": "LocalModelServer",
    "metadata": {"name": "iris-staging"},
    "spec": {"port": 8501, "modelsConfig": "model_config_list {}"},
}


def _steps(state: str, names=("export", "apply", "wait", "verify")) -> list[dict]:
    """Steps as the pipeline leaves them: all done (live), one failed (failed), one running (running)."""
    now = timezone.now()
    steps = []
    for i, name in enumerate(names):
        step = {
            "name": name,
            "title": name.capitalize(),
            "state": "done",
            "detail": f"{name} ok",
            "started_at": (now + timedelta(seconds=i)).isoformat(),
            "finished_at": (now + timedelta(seconds=i, milliseconds=700)).isoformat(),
        }
        if state == Rollout.RUNNING and i == 1:
            step.update(state="running", finished_at=None, detail="applying\nline two")
        elif state == Rollout.RUNNING and i > 1:
            step.update(state="pending", started_at=None, finished_at=None, detail="")
        elif state in (Rollout.FAILED, Rollout.ROLLED_BACK) and i == 2:
            step.update(state="failed", detail="model could not load")
        elif state in (Rollout.FAILED, Rollout.ROLLED_BACK) and i > 2:
            step.update(state="skipped", started_at=None, finished_at=None, detail="")
        steps.append(step)
    return steps


def add_rollout(
    deployment,
    revision,
    *,
    version=None,
    state=Rollout.LIVE,
    kind=Rollout.DEPLOY,
    request=None,
    requested_by=None,
    reason="",
) -> Rollout:
    now = timezone.now()
    active = state in Rollout.ACTIVE
    rollout = Rollout.objects.create(
        deployment=deployment,
        revision=revision,
        kind=kind,
        version=version,
        request=request,
        requested_by=requested_by,
        state=state,
        reason=reason,
        steps=_steps(state),
        manifests=[] if state == Rollout.QUEUED else [MANIFEST],
        started_at=None if state == Rollout.QUEUED else now - timedelta(seconds=12),
        finished_at=None if active else now,
    )
    if state == Rollout.LIVE:
        Deployment.objects.filter(pk=deployment.pk).update(live_rollout=rollout, state=Deployment.SERVING)
    return rollout


def approved_request(model, version, environment, requester, approver, state=PromotionRequest.LIVE):
    req = PromotionRequest.objects.create(
        model=model, version=version, environment=environment, requested_by=requester, justification="j", state=state
    )
    Review.objects.create(request=req, reviewer=approver, decision=Review.APPROVE, comment="ok")
    return req


def mirrored_model(name: str = "iris") -> RegisteredModel:
    """A model with v1 and v2 in the registry mirror only: enough for these pages and for a
    rollback request (its gates read the mirror), and no MLflow round trips per test."""
    now = timezone.now()
    model = RegisteredModel.objects.create(name=name, created_at=now, updated_at=now, latest_version=2, version_count=2)
    for number in (1, 2):
        ModelVersion.objects.create(
            model=model,
            version=number,
            source=f"models:/{name}/{number}",
            created_at=now,
            updated_at=now,
            servable=True,
            signature=SIGNATURE,
        )
    return model


@pytest.fixture
def served(staging_local, engineer, approver):
    """iris in staging: rev 1 v1 live (then replaced), rev 2 v2 failed, rev 3 v2 live (serving now)."""
    iris = mirrored_model()
    v1, v2 = iris.versions.get(version=1), iris.versions.get(version=2)
    deployment = Deployment.objects.create(target=staging_local, model=iris, name="iris-staging", local_port=18999)
    env = staging_local.environment
    add_rollout(deployment, 1, version=v1, request=approved_request(iris, v1, env, engineer, approver))
    add_rollout(
        deployment,
        2,
        version=v2,
        state=Rollout.ROLLED_BACK,
        reason="v2 could not load; v1 restored",
        request=approved_request(iris, v2, env, engineer, approver, state=PromotionRequest.ROLLED_BACK),
    )
    add_rollout(deployment, 3, version=v2, request=approved_request(iris, v2, env, engineer, approver))
    deployment.refresh_from_db()
    return deployment


def _html(response) -> str:
    return response.content.decode()


# --- the list -----------------------------------------------------------------------


def test_the_list_shows_what_serves_where_and_its_last_rollout(browser_client, viewer, served):
    Deployment.objects.filter(pk=served.pk).update(drift_state=Deployment.OUT_OF_SYNC)
    client = browser_client(viewer)
    html = _html(client.get("/deployments/"))
    assert 'href="/deployments/"' in html and ">Deployments<" in html  # the nav link
    assert f"/deployments/{served.pk}/" in html and "iris" in html and "staging" in html and "local" in html
    assert "v2" in html and "rev 3" in html and "Serving" in html and "Out of sync" in html
    assert f"/rollouts/{served.live_rollout_id}/" in html and "Live" in html


def test_the_list_filters_by_environment_and_model(browser_client, viewer, served):
    client = browser_client(viewer)
    assert f"/deployments/{served.pk}/" in _html(client.get("/deployments/?environment=staging&model=iris"))
    other = _html(client.get("/deployments/?environment=production"))
    assert f"/deployments/{served.pk}/" not in other and "No deployments match" in other
    htmx = client.get("/deployments/?model=iris", HTTP_HX_REQUEST="true")
    assert "<html" not in _html(htmx) and 'id="results"' in _html(htmx)


# --- one deployment ------------------------------------------------------------------


def test_the_deployment_page_shows_what_serves_and_every_revision(browser_client, viewer, served):
    html = _html(browser_client(viewer).get(f"/deployments/{served.pk}/"))
    assert "Serving now" in html and "v2" in html and "http://127.0.0.1:18999/v1/models/iris" in html
    for rollout in served.rollouts.all():
        assert f'href="/rollouts/{rollout.pk}/"' in html
    assert "Rolled back" in html and "v2 could not load; v1 restored" in html
    assert "eli-engineer" in html and "ada-approver" in html  # requester and approver of each revision
    assert "12.0 s" in html  # duration


def test_viewer_sees_the_pages_but_no_buttons_and_cannot_post(browser_client, viewer, served):
    client = browser_client(viewer)
    html = _html(client.get(f"/deployments/{served.pk}/"))
    for action in ("/redeploy/", "/undeploy/", "/rollback/", "Roll back to this"):
        assert action not in html, action
    assert client.get(f"/rollouts/{served.live_rollout_id}/").status_code == 200
    for action, data in (
        ("redeploy", {}),
        ("undeploy", {"reason": "r"}),
        ("rollback", {"revision": 1, "justification": "j"}),
    ):
        assert client.post(f"/deployments/{served.pk}/{action}/", data).status_code == 403, action
    assert served.rollouts.count() == 3 and not PromotionRequest.objects.filter(kind="rollback").exists()


@pytest.mark.parametrize("role", ["viewer", "engineer", "approver", "admin_user", "nobody"])
@pytest.mark.parametrize(
    "method, path, data, allowed",
    [
        ("get", "/deployments/", None, {"viewer", "engineer", "approver", "admin_user"}),
        ("get", "/deployments/{pk}/", None, {"viewer", "engineer", "approver", "admin_user"}),
        ("get", "/rollouts/{rollout}/", None, {"viewer", "engineer", "approver", "admin_user"}),
        ("post", "/deployments/{pk}/redeploy/", {}, {"engineer", "admin_user"}),
        ("post", "/deployments/{pk}/undeploy/", {"reason": "retired"}, {"engineer", "admin_user"}),
        ("post", "/deployments/{pk}/rollback/", {"revision": 1, "justification": "j"}, {"engineer", "admin_user"}),
    ],
)
def test_deployment_page_permissions(request, browser_client, served, role, method, path, data, allowed):
    user = request.getfixturevalue(role)
    response = getattr(browser_client(user), method)(
        path.format(pk=served.pk, rollout=served.live_rollout_id), data or {}
    )
    if role in allowed:
        assert response.status_code in (200, 302), (path, response.status_code)
    else:
        assert response.status_code == 403, (path, response.status_code)


def test_someone_without_a_role_cannot_see_deployments(browser_client, nobody, served):
    client = browser_client(nobody)
    assert client.get("/deployments/").status_code == 403
    assert client.get(f"/deployments/{served.pk}/").status_code == 403
    assert client.get(f"/rollouts/{served.live_rollout_id}/").status_code == 403
    assert ">Deployments<" not in _html(client.get("/settings/tokens/"))


@pytest.fixture
def no_approval(served):
    """Staging requires no approval: redeploy and undeploy run at once (where approval is
    required they become requests: tests/test_deployment_approvals.py)."""
    Environment.objects.filter(pk=served.target.environment_id).update(required_approvals=0)


def test_engineer_redeploys_and_lands_on_the_rollout_page(
    browser_client, engineer, served, no_approval, sent_tasks, django_capture_on_commit_callbacks
):
    client = browser_client(engineer)
    html = _html(client.get(f"/deployments/{served.pk}/"))
    assert f'action="/deployments/{served.pk}/redeploy/"' in html and "Redeploy" in html
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/deployments/{served.pk}/redeploy/")
    rollout = served.rollouts.get(revision=4)
    assert response.status_code == 302 and response["Location"] == f"/rollouts/{rollout.pk}/"
    assert rollout.kind == Rollout.REDEPLOY and rollout.state == Rollout.QUEUED and rollout.requested_by == engineer
    assert rollout.version.version == 2
    assert sent_tasks == [("deployer.run_rollout", [rollout.pk])]
    # While it is queued the page shows it in progress and offers no second redeploy.
    html = _html(client.get(f"/deployments/{served.pk}/"))
    assert "In progress" in html and 'hx-trigger="every 1s"' in html
    assert f'action="/deployments/{served.pk}/redeploy/"' not in html


def test_redeploy_while_a_rollout_runs_is_refused_with_409(browser_client, engineer, served, no_approval):
    add_rollout(served, 4, version=served.live_rollout.version, state=Rollout.RUNNING, kind=Rollout.REDEPLOY)
    response = browser_client(engineer).post(f"/deployments/{served.pk}/redeploy/")
    assert response.status_code == 409 and "Revision 4 is still running" in _html(response)
    assert served.rollouts.count() == 4


def test_undeploy_needs_a_reason(
    browser_client, engineer, served, no_approval, sent_tasks, django_capture_on_commit_callbacks
):
    client = browser_client(engineer)
    refused = client.post(f"/deployments/{served.pk}/undeploy/", {"reason": "  "})
    assert refused.status_code == 400
    assert 'name="reason"' in _html(refused) and "This field is required." in _html(refused)
    assert served.rollouts.count() == 3

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/deployments/{served.pk}/undeploy/", {"reason": "Model retired"})
    rollout = served.rollouts.get(revision=4)
    assert response.status_code == 302 and response["Location"] == f"/rollouts/{rollout.pk}/"
    assert rollout.kind == Rollout.UNDEPLOY and rollout.reason == "Model retired"
    assert sent_tasks == [("deployer.run_rollout", [rollout.pk])]


def test_rollback_to_an_earlier_live_revision_opens_a_rollback_request(browser_client, engineer, served):
    client = browser_client(engineer)
    html = _html(client.get(f"/deployments/{served.pk}/"))
    # Offered for revision 1 only: 2 never went live, 3 serves now.
    assert html.count("Roll back to this") == 1 and 'name="revision" value="1"' in html
    response = client.post(f"/deployments/{served.pk}/rollback/", {"revision": 1, "justification": "v2 drifts"})
    req = PromotionRequest.objects.get(kind="rollback")
    assert response.status_code == 302 and response["Location"] == f"/promotions/{req.pk}/"
    assert req.version.version == 1 and req.environment.name == "staging" and req.requested_by == engineer
    assert req.justification == "v2 drifts"
    assert "rollback" in _html(client.get(response["Location"]))


def test_rollback_to_a_revision_that_never_went_live_is_refused(browser_client, engineer, served):
    response = browser_client(engineer).post(
        f"/deployments/{served.pk}/rollback/", {"revision": 2, "justification": "please"}
    )
    assert response.status_code == 400
    assert "Revision 2 never went live" in _html(response)
    assert not PromotionRequest.objects.filter(kind="rollback").exists()


def test_rollback_needs_a_justification(browser_client, engineer, served):
    response = browser_client(engineer).post(
        f"/deployments/{served.pk}/rollback/", {"revision": 1, "justification": ""}
    )
    assert response.status_code == 400 and "This field is required." in _html(response)
    assert '<details class="comment-reply" open>' in _html(response)  # the form reopens on its row
    assert not PromotionRequest.objects.filter(kind="rollback").exists()


def test_drift_shows_the_diff_and_a_reapply_button(browser_client, engineer, viewer, served):
    Deployment.objects.filter(pk=served.pk).update(
        drift_state=Deployment.OUT_OF_SYNC,
        drift_diff=[
            {"object": "LocalModelServer/iris-staging", "field": "running", "applied": True, "live": False},
            {"object": "LocalModelServer/iris-staging", "field": "port", "applied": 8501, "live": 9000},
        ],
    )
    html = _html(browser_client(engineer).get(f"/deployments/{served.pk}/"))
    assert "Out of sync" in html and 'id="drift"' in html
    assert "LocalModelServer/iris-staging" in html and "running" in html and "9000" in html and "8501" in html
    assert "Re-apply revision 3" in html
    viewer_html = _html(browser_client(viewer).get(f"/deployments/{served.pk}/"))
    assert 'id="drift"' in viewer_html and "Re-apply revision 3" not in viewer_html


def test_an_in_sync_deployment_shows_no_drift_panel(browser_client, viewer, served):
    Deployment.objects.filter(pk=served.pk).update(drift_state=Deployment.IN_SYNC)
    html = _html(browser_client(viewer).get(f"/deployments/{served.pk}/"))
    assert "In sync" in html and 'id="drift"' not in html


def test_unknown_ids_are_the_404_page(browser_client, viewer, engineer):
    client = browser_client(viewer)
    response = client.get("/deployments/999/")
    assert response.status_code == 404 and "Deployment #999 does not exist." in _html(response)
    response = client.get("/rollouts/999/")
    assert response.status_code == 404 and "Rollout #999 does not exist." in _html(response)
    assert browser_client(engineer).post("/deployments/999/redeploy/").status_code == 404


# --- one rollout ---------------------------------------------------------------------


def test_an_active_rollout_polls_its_steps(browser_client, viewer, served):
    rollout = add_rollout(
        served,
        4,
        version=served.live_rollout.version,
        state=Rollout.RUNNING,
        kind=Rollout.REDEPLOY,
        requested_by=served.live_rollout.request.requested_by,
    )
    html = _html(browser_client(viewer).get(f"/rollouts/{rollout.pk}/"))
    assert f'hx-get="/rollouts/{rollout.pk}/"' in html and 'hx-trigger="every 1s"' in html
    assert 'hx-swap="outerHTML"' in html
    assert "Running" in html and "applying\nline two" in html and "<pre" in html
    assert "Redeploy" in html and "revision 4" in html and f"/deployments/{served.pk}/" in html


def test_a_finished_rollout_does_not_poll(browser_client, viewer, served):
    html = _html(browser_client(viewer).get(f"/rollouts/{served.live_rollout_id}/"))
    assert "every 1s" not in html and "hx-get" not in html.split('id="rollout-')[1].split(">")[0]
    assert "Live" in html and "Verify" in html and "0.7 s" in html  # a step's duration
    # The manifests, each in its own <details> with pretty JSON; and the request it deployed.
    assert "<details" in html and "LocalModelServer/iris-staging" in html and "&quot;modelsConfig&quot;" in html
    assert f"/promotions/{served.live_rollout.request_id}/" in html


def test_the_htmx_request_gets_only_the_steps(browser_client, viewer, served):
    rollout = add_rollout(served, 4, version=served.live_rollout.version, state=Rollout.RUNNING)
    response = browser_client(viewer).get(f"/rollouts/{rollout.pk}/", HTTP_HX_REQUEST="true")
    html = _html(response)
    assert response.status_code == 200 and "HX-Request" in response["Vary"]
    assert "<html" not in html and "Manifests" not in html
    assert html.strip().startswith("<section") and f'id="rollout-{rollout.pk}-steps"' in html
    assert 'hx-trigger="every 1s"' in html
    # Once it ends, the partial comes back without a trigger and the polling stops.
    Rollout.objects.filter(pk=rollout.pk).update(state=Rollout.LIVE, finished_at=timezone.now())
    html = _html(browser_client(viewer).get(f"/rollouts/{rollout.pk}/", HTTP_HX_REQUEST="true"))
    assert "hx-trigger" not in html and "Live" in html


def test_an_undeploy_rollout_page_shows_its_reason_and_no_manifests(browser_client, viewer, engineer, served):
    rollout = add_rollout(
        served, 4, kind=Rollout.UNDEPLOY, state=Rollout.QUEUED, reason="Model retired", requested_by=engineer
    )
    html = _html(browser_client(viewer).get(f"/rollouts/{rollout.pk}/"))
    assert "Undeploy" in html and "Model retired" in html and "An undeploy applies nothing." in html
    assert "eli-engineer" in html and "Waiting for a worker." in html


# --- on the promotion request page ------------------------------------------------------


def test_the_promotion_request_page_shows_its_rollout_steps(browser_client, viewer, served):
    live = served.live_rollout
    html = _html(browser_client(viewer).get(f"/promotions/{live.request_id}/"))
    assert f'href="/rollouts/{live.pk}/"' in html and f'id="rollout-{live.pk}-steps"' in html
    assert "Verify" in html and "every 1s" not in html


def test_the_promotion_request_page_polls_a_running_rollout(browser_client, viewer, served, engineer, approver):
    v1 = served.model.versions.get(version=1)
    req = approved_request(
        served.model, v1, served.target.environment, engineer, approver, state=PromotionRequest.DEPLOYING
    )
    rollout = add_rollout(served, 4, version=v1, state=Rollout.RUNNING, request=req)
    html = _html(browser_client(viewer).get(f"/promotions/{req.pk}/"))
    # The request page's panel polls the request (steps and state together, every second);
    # the steps inside it do not poll the rollout on their own as well.
    assert f'hx-get="/promotions/{req.pk}/?seen=deploying.' in html and 'hx-trigger="every 1s"' in html
    assert f'id="rollout-{rollout.pk}-steps"' in html and f'hx-get="/rollouts/{rollout.pk}/"' not in html
    rollout_page = _html(browser_client(viewer).get(f"/rollouts/{rollout.pk}/"))
    assert f'hx-get="/rollouts/{rollout.pk}/"' in rollout_page  # its own page still polls it


def test_a_live_request_keeps_polling_until_its_rollout_is_final_too(
    browser_client, viewer, served, engineer, approver
):
    # The request goes live in the rollout's last step, a moment before the rollout is marked live.
    v1 = served.model.versions.get(version=1)
    req = approved_request(served.model, v1, served.target.environment, engineer, approver, state=PromotionRequest.LIVE)
    rollout = add_rollout(served, 4, version=v1, state=Rollout.RUNNING, request=req)
    client = browser_client(viewer)
    assert f'hx-get="/promotions/{req.pk}/?seen=live.1"' in _html(client.get(f"/promotions/{req.pk}/"))

    Rollout.objects.filter(pk=rollout.pk).update(state=Rollout.LIVE, finished_at=timezone.now())
    poll = _html(client.get(f"/promotions/{req.pk}/?seen=live.1", HTTP_HX_REQUEST="true"))

    assert 'id="deployment-panel">' in poll and "hx-get" not in poll  # stopped, showing the end
    assert "hx-swap-oob" not in poll  # the request's state had not changed


def test_a_request_without_a_rollout_shows_no_steps(browser_client, viewer, staging, engineer, approver):
    iris = mirrored_model()
    req = approved_request(
        iris, iris.versions.get(version=1), staging, engineer, approver, state=PromotionRequest.APPROVED
    )
    html = _html(browser_client(viewer).get(f"/promotions/{req.pk}/"))
    # (The "Rollout plan" card, id="rollout-plan", is the request's, not a rollout's.)
    assert "/rollouts/" not in html and not re.search(r'id="rollout-\d+-steps"', html)
