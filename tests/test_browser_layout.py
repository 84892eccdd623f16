"""Every console page fits a 1280 px and a 1920 px window: no horizontal scroll of the page,
every table header within the viewport. Data as the demo makes it: real rollouts on the
local backend, a long model name, 15 minutes of traffic, an audit trail.

The screenshots are written only on purpose, with one command (PNGs, device scale 1):

    MODELGATE_SCREENSHOTS=docs MODELGATE_BROWSER_REQUIRED=1 \\
        .venv/bin/python -m pytest tests/test_browser_layout.py -n0

writes docs/screenshots/<page>-<width>.png (the layout set, compared by eye before a
commit) and docs/tour/request.png and docs/tour/deployment.png (the README's tour).
`make screenshots` runs the same.
"""

import math
import os
import shutil
import tempfile
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from console.accounts.services import token_create
from deployer.metrics.arithmetic import Interval
from deployer.metrics.points import FINE, traffic_fields
from deployer.models import Deployment, MetricPoint, Rollout
from registry.promotions import services as promotions
from registry.promotions.models import Environment, PromotionRequest
from tests import factories
from tests.deployer_fixtures import _stop_model_servers as stop_model_servers

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

WIDTHS = (1280, 1920)
HEIGHT = 900
MAX_SHOT_HEIGHT = 2000
ROOT = Path(__file__).resolve().parents[1]
LONG_NAME = "customer-churn_gradient-boosted-eu-west"


def _screenshot_root() -> Path | None:
    value = os.environ.get("MODELGATE_SCREENSHOTS")
    return (ROOT / value) if value else None


def _save_png(png: bytes, path: Path) -> None:
    """A palette PNG: these screenshots are flat UI colours, so 256 colours look the same at
    a third of the size."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import io

        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow comes with MLflow
        path.write_bytes(png)
        return
    image = Image.open(io.BytesIO(png)).convert("RGB")
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)


def _promote(*, engineer, approver, version, environment, sent_tasks, justification) -> PromotionRequest:
    req = promotions.promotion_request(
        actor=engineer, version=version, environment=environment, justification=justification
    )
    promotions.promotion_approve(actor=approver, request_id=req.pk, comment="Metrics look good, ship it.")
    sent_tasks.run_all()
    req.refresh_from_db()
    assert req.state == PromotionRequest.LIVE, req.state_reason
    return req


def _traffic(deployment: Deployment, version: int, *, rps: float, seed: int, track: str = MetricPoint.STABLE) -> None:
    """The last 15 minutes of one track in 10-second points, shaped like a service's: a slow
    wave, a little noise. Written again before each width, so "the last minute" is never stale."""
    MetricPoint.objects.filter(deployment=deployment, track=track).delete()
    now = timezone.now()
    start = now.replace(microsecond=0) - timedelta(minutes=15)
    start -= timedelta(seconds=start.second % FINE)
    points = []
    for i in range(15 * 60 // FINE):
        wave = 1 + 0.35 * math.sin(i / 9 + seed) + 0.1 * math.sin(i * 1.7 + seed)
        requests = max(0, round(rps * FINE * wave))
        errors = 1 if (i + seed) % 23 == 0 else 0
        fast = round(requests * (0.7 + 0.1 * math.sin(i / 5)))
        slow = max(0, requests - fast - requests // 40)
        buckets = {"1000": fast, "2500": slow, "10000": requests - fast - slow, "+Inf": 0}
        interval = Interval(requests=requests, errors=errors, buckets=buckets, latency_sum_us=1100.0 * requests)
        points.append(
            MetricPoint(
                deployment=deployment,
                resolution=FINE,
                at=start + timedelta(seconds=i * FINE),
                version=version,
                replicas_desired=1,
                replicas_ready=1,
                track=track,
                **traffic_fields(interval),
            )
        )
    MetricPoint.objects.bulk_create(points)


def _canary(*, engineer, approver, version, sent_tasks) -> Rollout:
    """A canary of ``version`` in staging (where v2 serves), held a minute into its first step
    with no worker, as the controller leaves it between checks."""
    staging = Environment.objects.get(name="staging")
    plan = {"steps": [{"weight": 10, "seconds": 1800}, {"weight": 50, "seconds": 3600}], "analysis": {}}
    Environment.objects.filter(pk=staging.pk).update(rollout_strategy="canary", canary_plan=plan)
    req = promotions.promotion_request(
        actor=engineer, version=version, environment=staging, justification="The retrained v1, as a canary first."
    )
    promotions.promotion_approve(actor=approver, request_id=req.pk, comment="Let the numbers decide.")
    sent_tasks.run_all()
    rollout = Rollout.objects.get(request=req)
    assert rollout.state == Rollout.RUNNING and rollout.next_check_at is not None, rollout.steps
    return rollout


@pytest.fixture
def short_local_root(settings, local_root):
    """A short folder for the model servers (its path is in the export step the tour shows),
    whose servers are stopped even when the setup fails half-way."""
    root = Path(tempfile.mkdtemp(prefix="modelgate-")) / "deployments"
    settings.DEPLOYER_LOCAL_ROOT = root
    yield root
    stop_model_servers(root)
    shutil.rmtree(root.parent, ignore_errors=True)


@pytest.fixture
def console_data(
    short_local_root, engineer, approver, admin_user, mlflow_store, staging_local, production_local, sent_tasks
):
    """What a console looks like after the README's demo and a little more."""
    Environment.objects.filter(pk=production_local.environment_id).update(protected=True)
    staging, production = staging_local.environment, production_local.environment
    logged = mlflow_store.template.models
    iris = factories.model(
        actor=engineer,
        name="iris-classifier",
        description="Demo: classifies iris flowers from four measurements.",
        tags={"team": "demo", "task": "classification"},
    )
    churn = factories.model(
        actor=engineer,
        name=LONG_NAME,
        description="Predicts which customers will cancel within 30 days, from billing and support events.",
        tags={"team": "growth", "task": "classification", "region": "eu-west-1", "framework": "tensorflow"},
    )
    for model in (iris, churn):
        for one in logged:
            factories.version(actor=engineer, model=model, logged=one)
    v1, v2 = iris.versions.get(version=1), iris.versions.get(version=2)

    # Three real rollouts on the local backend (each starts a model server): enough for
    # every page to show what it shows in use, and a long name in every table.
    common = {"engineer": engineer, "approver": approver, "sent_tasks": sent_tasks}
    _promote(version=v2, environment=staging, justification="v2: accuracy 0.95 on the holdout.", **common)
    live = _promote(version=v2, environment=production, justification="v2 ran a day in staging.", **common)
    _promote(version=churn.versions.get(version=2), environment=staging, justification="Nightly retrain.", **common)
    blocked = promotions.promotion_request(
        actor=engineer, version=v1, environment=production, justification="Try v1 in production."
    )
    assert blocked.state == PromotionRequest.BLOCKED
    pending = promotions.promotion_request(
        actor=engineer,
        version=churn.versions.get(version=2),
        environment=production,
        justification="Retrained on November's data.",
    )
    token_create(user=admin_user, name="github-actions-nightly")
    canary = _canary(engineer=engineer, approver=approver, version=churn.versions.get(version=1), sent_tasks=sent_tasks)

    def traffic():
        for seed, deployment in enumerate(Deployment.objects.select_related("live_rollout__version").order_by("pk")):
            _traffic(deployment, deployment.live_rollout.version.version, rps=4 + 8 * seed, seed=seed)
        _traffic(canary.deployment, 1, rps=1.5, seed=5, track=MetricPoint.CANARY)

    production_deployment = Deployment.objects.get(model=iris, target=production_local)
    return {
        "iris": iris,
        "live": live,
        "pending": pending,
        "deployment": production_deployment,
        "rollout": Rollout.objects.get(request=live),
        "canary": canary,
        "traffic": traffic,
    }


def _pages(data) -> list[tuple[str, str]]:
    return [
        ("models", "/models/"),
        ("model", "/models/iris-classifier/"),
        ("model-long-name", f"/models/{LONG_NAME}/"),
        ("version", "/models/iris-classifier/versions/2/"),
        ("requests", "/promotions/"),
        ("approvals", "/promotions/inbox/"),
        ("request", f"/promotions/{data['live'].pk}/"),
        ("request-pending", f"/promotions/{data['pending'].pk}/"),
        ("deployments", "/deployments/"),
        ("deployment", f"/deployments/{data['deployment'].pk}/"),
        ("rollout", f"/rollouts/{data['rollout'].pk}/"),
        ("rollout-canary", f"/rollouts/{data['canary'].pk}/"),
        ("audit", "/audit/"),
        ("environments", "/environments/"),
        ("environment", "/environments/production/"),
        ("tokens", "/settings/tokens/"),
    ]


# Whether the page scrolls sideways, and which table headers end outside the window or are
# clipped by their table's scrolling wrapper (a header the reader has to scroll to find).
_MEASURE = """() => {
  const width = window.innerWidth;
  const clipped = [];
  for (const th of document.querySelectorAll("main th")) {
    const box = th.getBoundingClientRect();
    if (box.width === 0) continue;
    const wrap = th.closest(".table-wrap");
    const limit = Math.min(width, wrap ? wrap.getBoundingClientRect().right : width);
    if (box.right > limit + 1) clipped.push(th.textContent.trim() || "(blank)");
  }
  return {scrollWidth: document.documentElement.scrollWidth, width, clipped};
}"""


def _check(page, name: str, width: int) -> list[str]:
    found = page.evaluate(_MEASURE)
    problems = []
    if found["scrollWidth"] > found["width"]:
        problems.append(f"{name} at {width}px scrolls sideways: {found['scrollWidth']} > {found['width']}")
    if found["clipped"]:
        problems.append(f"{name} at {width}px: headers outside the window: {found['clipped']}")
    return problems


def _page_shot(page, width: int) -> bytes:
    """The whole page down to MAX_SHOT_HEIGHT: the layout is judged on the first screens, and a
    long audit trail would only make the file larger."""
    height = min(page.evaluate("document.documentElement.scrollHeight"), MAX_SHOT_HEIGHT)
    return page.screenshot(full_page=True, clip={"x": 0, "y": 0, "width": width, "height": height})


def _settle(page) -> None:
    page.wait_for_load_state("networkidle")
    page.evaluate("document.fonts.ready")


def test_every_console_page_fits_a_1280_and_a_1920_pixel_window(browser, live_server, console_data, admin_user):
    shots = _screenshot_root()
    problems = []
    for width in WIDTHS:
        console_data["traffic"]()
        context = browser.new_context(
            base_url=live_server.url, viewport={"width": width, "height": HEIGHT}, device_scale_factor=1
        )
        context.set_default_timeout(20_000)
        page = context.new_page()
        try:
            page.goto("/login/")
            _settle(page)
            problems += _check(page, "sign-in", width)
            if shots:
                _save_png(page.screenshot(), shots / "screenshots" / f"sign-in-{width}.png")
            page.fill("input[name=username]", admin_user.get_username())
            page.fill("input[name=password]", f"pw-{admin_user.get_username()}")
            page.click("button[type=submit]")
            page.wait_for_url(lambda url: "/login/" not in url)

            for name, url in _pages(console_data):
                response = page.goto(url)
                assert response is not None and response.status == 200, (url, response and response.status)
                _settle(page)
                if name == "deployment":
                    expect(page.locator("#metrics canvas").first).to_be_visible()
                if name == "rollout-canary":
                    expect(page.locator("#canary-charts canvas").first).to_be_visible()
                    expect(page.locator("#canary-charts [data-role=totals]")).to_contain_text("canary:")
                problems += _check(page, name, width)
                if shots:
                    _save_png(_page_shot(page, width), shots / "screenshots" / f"{name}-{width}.png")

            # The headline case of the issue: the Deployments table's last column is on screen.
            page.goto("/deployments/")
            last = page.get_by_role("columnheader", name="Last rollout")
            box = last.bounding_box()
            if box is None or box["x"] + box["width"] > width:
                problems.append(f"deployments at {width}px: 'Last rollout' is off screen: {box}")
        finally:
            context.close()
    assert not problems, "\n".join(problems)

    if shots:
        console_data["traffic"]()
        _tour(browser, live_server, console_data, admin_user, shots / "tour")


def _tour(browser, live_server, data, user, folder: Path) -> None:
    """The README's 60-second tour: the request page after its rollout, and the charts."""
    context = browser.new_context(
        base_url=live_server.url, viewport={"width": 1280, "height": 1080}, device_scale_factor=1
    )
    page = context.new_page()
    try:
        page.goto("/login/")
        page.fill("input[name=username]", user.get_username())
        page.fill("input[name=password]", f"pw-{user.get_username()}")
        page.click("button[type=submit]")
        page.wait_for_url(lambda url: "/login/" not in url)
        page.goto(f"/promotions/{data['live'].pk}/")
        _settle(page)
        _save_png(page.screenshot(), folder / "request.png")
        page.goto(f"/deployments/{data['deployment'].pk}/")
        _settle(page)
        metrics = page.locator("#metrics")
        expect(metrics.locator("canvas").first).to_be_visible()
        _save_png(metrics.screenshot(), folder / "deployment.png")
    finally:
        context.close()
