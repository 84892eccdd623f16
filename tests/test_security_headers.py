"""Issue 11.8: production settings pass `check --deploy`, every response carries a strict
Content-Security-Policy and the usual headers, no template needs 'unsafe-inline', and
Django's debug pages are never shown when DEBUG is off."""

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _manage(tmp_path, *args, **env):
    base = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/tmp"),
        "MODELGATE_VAR_DIR": str(tmp_path / "var"),
        "DJANGO_SETTINGS_MODULE": "console.settings",
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


PRODUCTION = {
    "DEBUG": "false",
    "SECRET_KEY": secrets.token_urlsafe(50),
    "ALLOWED_HOSTS": "modelgate.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://modelgate.example.com",
    "TRUST_X_FORWARDED_PROTO": "true",
    "SECURE_SSL_REDIRECT": "true",
    "SECURE_HSTS_SECONDS": "31536000",
    "SECURE_HSTS_PRELOAD": "true",
}


def test_check_deploy_is_clean_with_production_settings(tmp_path):
    result = _manage(tmp_path, "check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


def test_check_deploy_names_what_is_missing_when_tls_settings_are_not_given(tmp_path):
    # The same check fails loudly when an operator forgets HSTS and the HTTPS redirect.
    env = {k: v for k, v in PRODUCTION.items() if k not in {"SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS"}}
    result = _manage(tmp_path, "check", "--deploy", "--fail-level", "WARNING", **env)
    assert result.returncode != 0
    assert "security.W004" in result.stderr and "security.W008" in result.stderr


def test_production_settings_make_cookies_secure(tmp_path):
    result = _manage(
        tmp_path,
        "shell",
        "-c",
        "from django.conf import settings as s; print(s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, "
        "s.SESSION_COOKIE_HTTPONLY, s.SECURE_HSTS_INCLUDE_SUBDOMAINS, s.DEBUG)",
        **PRODUCTION,
    )
    assert result.stdout.strip().splitlines()[-1].split() == ["True", "True", "True", "True", "False"], result.stderr


# --- Headers ---------------------------------------------------------------------------


def _csp(response) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    return {d.split()[0]: d.split()[1:] for d in (part.strip() for part in header.split(";")) if d}


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/login/", "/models/", "/api/v1/docs/", "/api/v1/me/", "/no-such-page/"])
def test_every_response_has_a_strict_csp_and_the_usual_headers(browser_client, viewer, path):
    response = browser_client(viewer).get(path)

    policy = _csp(response)
    assert policy["default-src"] == ["'self'"]
    assert policy["script-src"] == ["'self'"] and policy["style-src"] == ["'self'"]
    assert policy["object-src"] == ["'none'"] and policy["frame-ancestors"] == ["'none'"]
    assert "unsafe" not in response["Content-Security-Policy"]
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"


@pytest.mark.django_db
def test_behind_tls_plain_http_is_redirected_and_https_gets_hsts(client, settings):
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 31536000
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True

    plain = client.get("/login/")
    assert plain.status_code == 301 and plain["Location"] == "https://testserver/login/"
    secure = client.get("/login/", secure=True)
    assert secure.status_code == 200
    assert secure["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
    # Probes and Prometheus talk to the pod over plain HTTP.
    assert client.get("/healthz").status_code == 200


def test_the_swagger_page_runs_its_script_from_a_file(browser_client, viewer, db):
    client = browser_client(viewer)
    page = client.get("/api/v1/docs/").content.decode()
    script_src = re.search(r'<script src="([^"]*\?[^"]*script[^"]*)"', page).group(1)
    script = client.get(script_src.replace("&amp;", "&"))
    assert script.status_code == 200 and script["Content-Type"].startswith("application/javascript")
    assert "SwaggerUIBundle" in script.content.decode()


# --- Templates -------------------------------------------------------------------------

INLINE = {
    "inline <script>": re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.IGNORECASE),
    "<style> block": re.compile(r"<style\b", re.IGNORECASE),
    "style= attribute": re.compile(r"\sstyle\s*=", re.IGNORECASE),
    "on*= handler": re.compile(r"\son[a-z]+\s*=", re.IGNORECASE),
    "hx-on": re.compile(r"\b(data-)?hx-on", re.IGNORECASE),
    "javascript: URL": re.compile(r"javascript:", re.IGNORECASE),
    "hx-vars / js: values (eval)": re.compile(r"hx-vars|hx-vals\s*=\s*['\"]\s*js:", re.IGNORECASE),
}


APPS = {"console", "registry", "deployer"}


def _templates():
    from django.conf import settings
    from django.template.utils import get_app_template_dirs

    dirs = [Path(d) for d in settings.TEMPLATES[0]["DIRS"]]
    # Our apps' template folders, not those of installed packages (a .venv inside the checkout).
    ours = [
        Path(d)
        for d in get_app_template_dirs("templates")
        if Path(d).resolve().is_relative_to(ROOT) and Path(d).resolve().relative_to(ROOT).parts[0] in APPS
    ]
    return sorted(p for d in dirs + ours for p in d.rglob("*.html"))


def test_no_template_has_inline_script_style_or_handlers():
    found = []
    for template in _templates():
        text = template.read_text()
        for what, pattern in INLINE.items():
            for match in pattern.finditer(text):
                line = text.count("\n", 0, match.start()) + 1
                found.append(f"{template.relative_to(ROOT)}:{line}: {what}")
    assert len(_templates()) > 30
    assert found == []


@pytest.mark.parametrize(
    "snippet, what",
    [
        ('<button onclick="x()">', "on*= handler"),
        ("<script>alert(1)</script>", "inline <script>"),
        ('<div hx-on::after-swap="x()">', "hx-on"),
        ('<p style="color: red">', "style= attribute"),
    ],
)
def test_the_template_scan_catches_each_kind(snippet, what):
    assert INLINE[what].search(snippet)
    assert not INLINE[what].search('<script src="/static/js/modelgate.js" defer></script> <form data-confirm="x">')


# --- Error pages with DEBUG off --------------------------------------------------------


@pytest.fixture
def production_errors(settings, client):
    settings.DEBUG = False
    settings.ROOT_URLCONF = "tests.security_urls"
    client.raise_request_exception = False
    return client


@pytest.mark.django_db
def test_a_server_error_shows_the_plain_500_page_not_the_debug_page(production_errors, viewer):
    production_errors.force_login(viewer)
    response = production_errors.get("/boom/")
    page = response.content.decode()
    assert response.status_code == 500
    assert "Something went wrong" in page
    assert "internal detail" not in page and "Traceback" not in page and "RuntimeError" not in page


@pytest.mark.django_db
def test_an_unknown_page_shows_the_404_page_without_the_url_list(production_errors, viewer):
    production_errors.force_login(viewer)
    response = production_errors.get("/no/such/page/")
    page = response.content.decode()
    assert response.status_code == 404
    assert "There is no page at this address." in page
    assert "URLconf" not in page and "boom/" not in page


@pytest.mark.django_db
def test_a_foreign_host_header_gets_the_400_page(production_errors):
    response = production_errors.get("/login/", HTTP_HOST="evil.example.net")
    assert response.status_code == 400
    assert "Bad request" in response.content.decode()
    assert "ALLOWED_HOSTS" not in response.content.decode()


@pytest.mark.django_db
def test_a_failed_csrf_check_gets_the_console_page(settings, viewer):
    from django.test import Client

    settings.DEBUG = False
    client = Client(enforce_csrf_checks=True)
    client.force_login(viewer)
    response = client.post("/logout/")
    page = response.content.decode()
    assert response.status_code == 403
    assert "This form has expired" in page
    assert "CSRF_FAILURE_VIEW" not in page and "Reason given for failure" not in page
