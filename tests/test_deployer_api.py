"""The deployments API: reads, the operator's verbs, every role against every endpoint, the
error shape, and one run of the real pipeline driven through the API."""

import pytest
from django.core.management import call_command

from deployer.models import Deployment, Rollout
from registry.promotions.models import Environment, PromotionRequest
from tests.test_deployer_pages import add_rollout, served  # noqa: F401 - served is a fixture

pytestmark = pytest.mark.django_db

ROLES = ["viewer", "engineer", "approver", "admin_user", "nobody"]
CAN_READ = {"viewer", "engineer", "approver", "admin_user"}
CAN_OPERATE = {"engineer", "admin_user"}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(
    "action, method, path, body, allowed",
    [
        ("list", "get", "/api/v1/deployments/", None, CAN_READ),
        ("detail", "get", "/api/v1/deployments/{pk}/", None, CAN_READ),
        ("history", "get", "/api/v1/deployments/{pk}/rollouts/", None, CAN_READ),
        ("rollout", "get", "/api/v1/rollouts/{rollout}/", None, CAN_READ),
        ("redeploy", "post", "/api/v1/deployments/{pk}/redeploy/", {}, CAN_OPERATE),
        ("undeploy", "post", "/api/v1/deployments/{pk}/undeploy/", {"reason": "retired"}, CAN_OPERATE),
        # A rollback is a promotion request: whoever may request a promotion may ask for one.
        ("rollback", "post", "/api/v1/deployments/{pk}/rollback/", {"revision": 1, "justification": "j"}, CAN_OPERATE),
    ],
)
def test_deployment_api_permissions(request, api, served, role, action, method, path, body, allowed):
    user = request.getfixturevalue(role)
    response = getattr(api(user), method)(
        path.format(pk=served.pk, rollout=served.live_rollout_id), body, format="json"
    )
    if role in allowed:
        assert response.status_code < 300, (action, response.json())
    else:
        assert response.status_code == 403, (action, response.status_code)
        assert "permission" in response.json()["detail"]


def test_anonymous_calls_get_401(client, served):
    assert client.get("/api/v1/deployments/").status_code == 401
    assert client.post(f"/api/v1/deployments/{served.pk}/redeploy/").status_code == 401


# --- reads ---------------------------------------------------------------------------------


def test_the_list_is_paginated_and_filters_by_environment_and_model(api, viewer, served):
    client = api(viewer)
    body = client.get("/api/v1/deployments/").json()
    assert set(body) == {"next", "previous", "results"}
    [row] = body["results"]
    assert row["id"] == served.pk and row["model"] == "iris" and row["environment"] == "staging"
    assert row["backend"] == "local" and row["state"] == "serving" and row["live_version"] == 2
    assert row["live_revision"] == 3 and row["drift_state"] == "unknown"
    assert row["last_rollout"] == {
        "id": served.live_rollout_id,
        "revision": 3,
        "state": "live",
        "created_at": row["last_rollout"]["created_at"],
    }
    assert client.get("/api/v1/deployments/?environment=staging&model=iris").json()["results"]
    assert client.get("/api/v1/deployments/?environment=production").json()["results"] == []
    assert client.get("/api/v1/deployments/?model=nope").json()["results"] == []


def test_the_detail_has_the_live_revision_drift_and_active_rollout(api, viewer, served):
    Deployment.objects.filter(pk=served.pk).update(
        drift_state=Deployment.OUT_OF_SYNC,
        drift_diff=[{"object": "LocalModelServer/iris-staging", "field": "port", "applied": 8501, "live": 9000}],
    )
    client = api(viewer)
    body = client.get(f"/api/v1/deployments/{served.pk}/").json()
    assert body["live_revision"] == 3 and body["live_version"] == 2 and body["active_rollout"] is None
    assert body["drift_state"] == "out_of_sync"
    assert body["drift_diff"] == [
        {"object": "LocalModelServer/iris-staging", "field": "port", "applied": 8501, "live": 9000}
    ]
    running = add_rollout(served, 4, version=served.live_rollout.version, state=Rollout.RUNNING, kind=Rollout.REDEPLOY)
    assert client.get(f"/api/v1/deployments/{served.pk}/").json()["active_rollout"] == running.pk


def test_the_history_lists_every_revision_newest_first_with_requester_and_approvers(api, viewer, served):
    body = api(viewer).get(f"/api/v1/deployments/{served.pk}/rollouts/").json()
    assert [r["revision"] for r in body["results"]] == [3, 2, 1]
    newest = body["results"][0]
    assert newest["requested_by"] == "eli-engineer" and newest["approvers"] == ["ada-approver"]
    assert newest["state"] == "live" and newest["version"] == 2 and newest["duration_seconds"] == 12.0
    assert body["results"][1]["reason"] == "v2 could not load; v1 restored"


def test_a_rollout_has_its_steps_manifests_and_timings(api, viewer, served):
    body = api(viewer).get(f"/api/v1/rollouts/{served.live_rollout_id}/").json()
    assert body["revision"] == 3 and body["kind"] == "deploy" and body["state"] == "live"
    assert [s["name"] for s in body["steps"]] == ["export", "apply", "wait", "verify"]
    step = body["steps"][0]
    assert step["state"] == "done" and step["detail"] == "export ok" and step["title"] == "Export"
    assert step["started_at"].endswith("Z") and step["finished_at"]
    assert body["manifests"][0]["kind"] == "LocalModelServer"
    assert body["started_at"] and body["finished_at"] and body["duration_seconds"] == 12.0
    assert body["request"] == served.live_rollout.request_id


def test_unknown_ids_are_json_404s(api, engineer):
    client = api(engineer)
    for method, path in [
        ("get", "/api/v1/deployments/999/"),
        ("get", "/api/v1/deployments/999/rollouts/"),
        ("get", "/api/v1/rollouts/999/"),
        ("post", "/api/v1/deployments/999/redeploy/"),
        ("post", "/api/v1/deployments/999/undeploy/"),
    ]:
        response = getattr(client, method)(path, {"reason": "r"}, format="json")
        assert response.status_code == 404, path
        assert response.json()["error"] == "not_found" and "#999 does not exist" in response.json()["detail"]
    response = client.post("/api/v1/deployments/999/rollback/", {"revision": 1, "justification": "j"}, format="json")
    assert response.status_code == 404 and response.json()["error"] == "not_found"


# --- verbs -----------------------------------------------------------------------------------
# Where the environment requires approval, redeploy and undeploy become requests
# (tests/test_deployment_approvals.py); these run them where none is required.


@pytest.fixture
def no_approval(served):
    Environment.objects.filter(pk=served.target.environment_id).update(required_approvals=0)


def test_engineer_redeploys_and_gets_the_queued_rollout(
    api, engineer, served, no_approval, sent_tasks, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = api(engineer).post(f"/api/v1/deployments/{served.pk}/redeploy/")
    assert response.status_code == 202
    body = response.json()
    assert body["kind"] == "redeploy" and body["state"] == "queued" and body["revision"] == 4
    assert (
        body["version"] == 2 and body["requested_by"] == "eli-engineer" and body["restore_to"] == served.live_rollout_id
    )
    assert [s["name"] for s in body["steps"]] == ["export", "apply", "wait", "verify"]
    assert sent_tasks == [("deployer.run_rollout", [body["id"]])]


def test_a_second_redeploy_while_one_is_queued_is_a_409(api, engineer, served, no_approval):
    client = api(engineer)
    assert client.post(f"/api/v1/deployments/{served.pk}/redeploy/").status_code == 202
    response = client.post(f"/api/v1/deployments/{served.pk}/redeploy/")
    assert response.status_code == 409
    assert response.json() == {"error": "conflict", "detail": "Revision 4 is still queued; wait for it to finish."}


def test_undeploy_without_a_reason_is_a_400_naming_reason(api, engineer, served):
    response = api(engineer).post(f"/api/v1/deployments/{served.pk}/undeploy/", {"reason": " "}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "invalid" and list(body["fields"]) == ["reason"] and body["detail"].startswith("reason:")
    assert served.rollouts.count() == 3


def test_engineer_undeploys_with_a_reason(
    api, engineer, served, no_approval, sent_tasks, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = api(engineer).post(
            f"/api/v1/deployments/{served.pk}/undeploy/", {"reason": "Model retired"}, format="json"
        )
    assert response.status_code == 202
    body = response.json()
    assert body["kind"] == "undeploy" and body["reason"] == "Model retired" and body["version"] is None
    assert sent_tasks == [("deployer.run_rollout", [body["id"]])]


def test_undeploying_what_is_not_serving_is_a_409(api, engineer, served):
    Deployment.objects.filter(pk=served.pk).update(state=Deployment.UNDEPLOYED, live_rollout=None)
    response = api(engineer).post(f"/api/v1/deployments/{served.pk}/undeploy/", {"reason": "again"}, format="json")
    assert response.status_code == 409 and response.json()["error"] == "conflict"


def test_rollback_to_an_earlier_live_revision_creates_a_rollback_request(api, engineer, served):
    response = api(engineer).post(
        f"/api/v1/deployments/{served.pk}/rollback/", {"revision": 1, "justification": "v2 misbehaves"}, format="json"
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    req = PromotionRequest.objects.get(pk=body["id"])
    assert req.is_rollback and req.version.version == 1 and body["is_rollback"] is True
    # The promotions API's representation of a request.
    assert body["model"] == "iris" and body["version"] == 1 and body["environment"] == "staging"
    assert body["justification"] == "v2 misbehaves" and body["requested_by"] == "eli-engineer"
    assert body["reviews"] == [] and body["comments"] == []


@pytest.mark.parametrize(
    "revision, message",
    [
        (2, "Revision 2 never went live"),
        (3, "v2 already serves"),
        (42, "Revision 42 does not exist"),
    ],
)
def test_rollback_to_a_revision_that_cannot_serve_again_is_a_400_naming_revision(
    api, engineer, served, revision, message
):
    response = api(engineer).post(
        f"/api/v1/deployments/{served.pk}/rollback/", {"revision": revision, "justification": "please"}, format="json"
    )
    assert response.status_code == 400
    body = response.json()
    assert list(body["fields"]) == ["revision"] and message in body["fields"]["revision"][0]
    assert not PromotionRequest.objects.filter(kind="rollback").exists()


def test_rollback_without_a_justification_is_a_400_naming_justification(api, engineer, served):
    response = api(engineer).post(f"/api/v1/deployments/{served.pk}/rollback/", {"revision": 1}, format="json")
    assert response.status_code == 400 and list(response.json()["fields"]) == ["justification"]


def test_the_openapi_schema_describes_the_deployment_endpoints_without_warnings(browser_client, viewer, tmp_path):
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml"))
    schema = browser_client(viewer).get("/api/v1/schema/").content.decode()
    for path in (
        "/api/v1/deployments/",
        "/api/v1/deployments/{id}/",
        "/api/v1/deployments/{id}/rollouts/",
        "/api/v1/deployments/{id}/redeploy/",
        "/api/v1/deployments/{id}/undeploy/",
        "/api/v1/deployments/{id}/rollback/",
        "/api/v1/rollouts/{id}/",
    ):
        assert f"{path}:" in schema, path


# --- the real pipeline, driven through the API ---------------------------------------------------


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_live_deployment_is_redeployed_and_undeployed_through_the_api(
    api, browser_client, engineer, approver, iris, staging_local, sent_tasks
):
    from registry.promotions import services as promotions

    req = promotions.promotion_request(
        actor=engineer,
        version=iris.versions.get(version=1),
        environment=staging_local.environment,
        justification="first",
    )
    browser_client(approver).post(f"/promotions/{req.pk}/approve/", {"approve-comment": "ok"})
    sent_tasks.run_all()
    client = api(engineer)
    [row] = client.get("/api/v1/deployments/").json()["results"]
    assert row["state"] == "serving" and row["live_version"] == 1 and row["last_rollout"]["state"] == "live"
    [first] = client.get(f"/api/v1/deployments/{row['id']}/rollouts/").json()["results"]
    assert first["requested_by"] == "eli-engineer" and first["approvers"] == ["ada-approver"]

    # staging requires an approval: a redeploy is a request, and once approved its rollout runs.
    asked = client.post(f"/api/v1/deployments/{row['id']}/redeploy/", {"reason": "restart"}, format="json")
    assert asked.status_code == 201 and asked.json()["kind"] == "redeploy" and sent_tasks == []
    browser_client(approver).post(f"/promotions/{asked.json()['id']}/approve/", {"approve-comment": "ok"})
    sent_tasks.run_all()
    redeploy = Rollout.objects.get(request_id=asked.json()["id"])
    assert PromotionRequest.objects.get(pk=asked.json()["id"]).state == PromotionRequest.LIVE
    done = client.get(f"/api/v1/rollouts/{redeploy.pk}/").json()
    assert done["state"] == "live", done
    assert all(s["state"] == "done" and s["started_at"] and s["finished_at"] for s in done["steps"])
    assert done["manifests"] and done["duration_seconds"] > 0
    page = browser_client(engineer).get(f"/rollouts/{redeploy.pk}/").content.decode()
    assert "every 1s" not in page and "Verify serving" in page

    asked = client.post(f"/api/v1/deployments/{row['id']}/undeploy/", {"reason": "retired"}, format="json")
    assert asked.status_code == 201 and asked.json()["kind"] == "undeploy"
    browser_client(approver).post(f"/promotions/{asked.json()['id']}/approve/", {"approve-comment": "ok"})
    sent_tasks.run_all()
    undeploy = Rollout.objects.get(request_id=asked.json()["id"])
    assert client.get(f"/api/v1/rollouts/{undeploy.pk}/").json()["state"] == "done"
    assert PromotionRequest.objects.get(pk=asked.json()["id"]).state == PromotionRequest.DONE
    detail = client.get(f"/api/v1/deployments/{row['id']}/").json()
    assert detail["state"] == "undeployed" and detail["live_rollout"] is None and detail["active_rollout"] is None
