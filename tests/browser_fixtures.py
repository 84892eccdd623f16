"""Playwright fixtures: the system Chromium (never a downloaded browser), a page per user
logged in through the login form, and a screenshot plus the page's HTML of every page of a
failed test under test-results/browser/ (CI keeps them)."""

import os
import re
import shutil
import threading
from pathlib import Path

import pytest

RESULTS = Path(__file__).resolve().parents[1] / "test-results" / "browser"


def chromium_path() -> str | None:
    return os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="session")
def browser():
    path = chromium_path()
    if path is None:
        message = "No Chromium: install Debian's chromium package (.ci/run does) or set CHROMIUM_PATH."
        if os.environ.get("MODELGATE_BROWSER_REQUIRED"):
            pytest.fail(message)
        pytest.skip(message)
    # Playwright's sync API runs an event loop in this thread; the tests' own ORM calls are
    # still synchronous and safe.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=path, args=["--no-sandbox"])
        yield instance
        instance.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture
def login(browser, live_server, request):
    """login(user) -> a Playwright page signed in as that user (password "pw-<username>")."""
    contexts = []

    def open_as(user):
        context = browser.new_context(base_url=live_server.url, viewport={"width": 1300, "height": 900})
        context.set_default_timeout(20_000)
        contexts.append((user.get_username(), context))
        page = context.new_page()
        page.goto("/login/")
        page.fill("input[name=username]", user.get_username())
        page.fill("input[name=password]", f"pw-{user.get_username()}")
        page.click("button[type=submit]")
        page.wait_for_url(lambda url: "/login/" not in url)
        return page

    yield open_as
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    for username, context in contexts:
        if failed:
            RESULTS.mkdir(parents=True, exist_ok=True)
            stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid)[-120:]
            for i, page in enumerate(context.pages):
                page.screenshot(path=str(RESULTS / f"{stem}-{username}-{i}.png"), full_page=True)
                (RESULTS / f"{stem}-{username}-{i}.html").write_text(page.content())
        context.close()


@pytest.fixture
def worker(sent_tasks):
    """A worker thread in the test process: runs the deployer tasks the console queues,
    as a Celery worker consuming the broker would."""
    from django.db import connection

    stop = threading.Event()

    def run():
        try:
            while not stop.wait(0.3):
                if sent_tasks:
                    try:
                        sent_tasks.run_all()
                    except Exception:  # a task's own error: a real worker logs it and goes on
                        import logging

                        logging.getLogger(__name__).exception("test worker: task failed")
        finally:
            connection.close()

    thread = threading.Thread(target=run, name="test-worker", daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join(timeout=120)
