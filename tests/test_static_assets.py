"""Static files in production carry hashed names from collectstatic's manifest, so a browser
never keeps an old script after an upgrade; the favicon is served, so no page logs a 404.
The suite itself runs without collectstatic (plain names, STATIC_MANIFEST off)."""

import re

import pytest
from django.core.management import call_command

pytestmark = pytest.mark.django_db

HASHED = r"/static/{}\.[0-9a-f]{{12}}\.{}"


@pytest.fixture
def production_static(settings, tmp_path):
    """The production storage, after `collectstatic` into a temporary STATIC_ROOT."""
    settings.STATIC_ROOT = tmp_path / "static"
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
    }
    call_command("collectstatic", interactive=False, verbosity=0)
    return settings.STATIC_ROOT


def test_the_suite_runs_with_plain_static_names_and_no_collectstatic(client, settings):
    assert settings.STORAGES["staticfiles"]["BACKEND"] == "django.contrib.staticfiles.storage.StaticFilesStorage"
    page = client.get("/login/").content.decode()
    assert '/static/css/modelgate.css"' in page


def test_pages_link_hashed_static_files_that_are_served_with_a_long_cache(client, production_static):
    assert (production_static / "staticfiles.json").exists()
    page = client.get("/login/").content.decode()
    for name, ext in (("css/modelgate", "css"), ("js/modelgate", "js"), ("favicon", "svg")):
        found = re.search(HASHED.format(re.escape(name), ext), page)
        assert found, f"no hashed {name}.{ext} in the page"
        served = client.get(found.group(0))
        assert served.status_code == 200, found.group(0)
        assert "immutable" in served["Cache-Control"]
    assert '/static/css/modelgate.css"' not in page


def test_the_favicon_is_served_at_the_site_root_without_signing_in(client):
    answer = client.get("/favicon.ico")
    assert answer.status_code == 200
    assert answer["Content-Type"] in ("image/x-icon", "image/vnd.microsoft.icon")
    assert b"".join(answer.streaming_content)[:4] == b"\x00\x00\x01\x00"  # an ICO header


def test_every_page_links_the_favicon(client):
    page = client.get("/login/").content.decode()
    assert '<link rel="icon" href="/favicon.ico"' in page
    assert re.search(r'<link rel="icon" href="/static/favicon\.svg" type="image/svg\+xml">', page)


def test_the_image_collects_static_files_outside_its_data_directory():
    from tests.test_compose import dockerfile_instructions

    instructions = dockerfile_instructions()
    ops = [op for op, _ in instructions]
    env = " ".join(args for op, args in instructions if op == "ENV")
    collect = next(i for i, (op, args) in enumerate(instructions) if op == "RUN" and "collectstatic" in args)
    assert collect > ops.index("COPY", ops.index("COPY") + 1), "collected after the code is copied in"
    assert collect < ops.index("USER"), "collected before the image drops to its user"
    assert "STATIC_ROOT=/app/staticfiles" in env and "DEBUG=false" in env  # the manifest storage
    assert "MODELGATE_VAR_DIR=/var/lib/modelgate" in env  # a volume there cannot hide the files
