"""Issue 11.8 in a real browser (the system Chromium): under the strict
Content-Security-Policy the main pages load with zero violations, and what needs script
still works: htmx live rollout steps and search, the deployment charts, the Swagger UI,
the confirm dialog and the dismissable message."""

import re

import pytest
from playwright.sync_api import expect

from deployer.models import Deployment
from tests.test_browser_journeys import _approve_in_browser, _request_in_browser, _watch_until_live

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

# Every CSP violation, every htmx eval refusal and every uncaught error, page by page.
WATCH = """
window.__problems = [];
document.addEventListener('securitypolicyviolation', e =>
  window.__problems.push(`CSP ${e.violatedDirective} blocked ${e.blockedURI || 'inline'} at ${e.sourceFile}:${e.lineNumber}`));
document.addEventListener('htmx:evalDisallowedError', e => window.__problems.push('htmx wanted eval'));
"""


class Watched:
    def __init__(self, page):
        self.page = page
        self.problems: list[str] = []
        page.context.add_init_script(WATCH)
        page.on(
            "console",
            lambda m: (
                self.problems.append(f"console: {m.text}")
                if "Content Security Policy" in m.text or "Content-Security-Policy" in m.text
                else None
            ),
        )
        page.on("pageerror", lambda e: self.problems.append(f"error on {page.url}: {e}"))

    def collect(self):
        self.problems += self.page.evaluate("window.__problems || []")

    def visit(self, url):
        self.collect()
        self.page.goto(url)
        self.page.wait_for_load_state("networkidle")
        self.collect()


def test_the_console_runs_under_the_csp_with_no_violations(
    login, worker, engineer, approver, admin_user, iris, staging_local
):
    eng = Watched(login(engineer))
    app = Watched(login(approver))

    # htmx: the review and the live rollout steps (polled every second) under the CSP.
    request_id = _request_in_browser(eng.page, "iris", 2, "staging", "csp check")
    _approve_in_browser(app.page, request_id, "ok")
    app.visit(f"/promotions/{request_id}/")
    _watch_until_live(app.page, request_id)

    # The charts: uPlot draws its canvases and the script reads the metrics API.
    deployment = Deployment.objects.get(model=iris)
    eng.visit(f"/deployments/{deployment.pk}/")
    expect(eng.page.locator("#metrics [data-role=totals]")).not_to_have_text("Loading…", timeout=20_000)
    assert eng.page.locator("#metrics canvas").count() >= 4

    # htmx live search.
    eng.visit("/models/")
    eng.page.fill("input[name=q]", "no-such-model")
    expect(eng.page.get_by_role("link", name="iris", exact=True)).to_have_count(0)
    eng.page.fill("input[name=q]", "iri")
    expect(eng.page.get_by_role("link", name="iris", exact=True)).to_have_count(1)

    for url in [
        "/models/iris/",
        "/models/iris/versions/2/",
        "/promotions/",
        "/promotions/inbox/",
        "/environments/",
        "/environments/staging/",
        "/deployments/",
        "/audit/",
        "/no-such-page/",
    ]:
        eng.visit(url)
        expect(eng.page.locator("h1").first).to_be_visible()

    # The Swagger UI renders the schema.
    eng.visit("/api/v1/docs/")
    expect(eng.page.locator(".swagger-ui .info .title")).to_contain_text("Modelgate API", timeout=20_000)

    # A new token's field selects itself; revoking asks first; the message closes with ×.
    eng.visit("/settings/tokens/")
    eng.page.fill("input[name=name]", "csp-check")
    eng.page.get_by_role("button", name="Create token").click()
    expect(eng.page.locator("#issued-token")).to_be_visible()
    eng.page.locator("#issued-token").focus()
    assert eng.page.evaluate("window.getSelection().toString() || document.activeElement.selectionEnd") != 0
    eng.page.once("dialog", lambda dialog: dialog.dismiss())
    eng.page.get_by_role("button", name="Revoke").click()
    expect(eng.page.get_by_role("button", name="Revoke")).to_be_visible()  # dismissed: not sent
    eng.page.once("dialog", lambda dialog: dialog.accept())
    eng.page.get_by_role("button", name="Revoke").click()
    message = eng.page.locator(".alert", has_text="revoked")
    expect(message).to_be_visible()
    message.get_by_role("button", name="Dismiss").click()
    expect(message).to_have_count(0)

    # The admin site.
    adm = Watched(login(admin_user))
    adm.visit("/admin/")
    adm.visit("/admin/auth/user/")

    for watched in (eng, app, adm):
        watched.collect()
    assert eng.problems + app.problems + adm.problems == []


def test_the_csp_would_report_an_inline_script(login, viewer):
    """The watch above can fail: an inline script injected into a page is reported."""
    page = Watched(login(viewer))
    page.visit("/models/")
    page.page.evaluate("""() => { const s = document.createElement('script');
                                  s.textContent = 'window.ran = true'; document.body.appendChild(s); }""")
    # Wait for the report itself (not a fixed pause: a slow browser must not pass the first
    # assertion below by not having run the script yet).
    page.page.wait_for_function("window.__problems.some(p => p.includes('script-src'))")
    page.collect()
    assert page.page.evaluate("window.ran === undefined")
    assert any(re.search(r"script-src", p) for p in page.problems), page.problems
