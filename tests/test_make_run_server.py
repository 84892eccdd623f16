"""`make run` serves with gunicorn, sized by WEB_WORKERS x WEB_THREADS, and that product
bounds the database connections: 32 concurrent clients get answers, never a 5xx, and on
PostgreSQL the console never holds more connections than it has threads."""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from tests.live_console import console_server, http

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
WORKERS, THREADS, CLIENTS = 2, 4, 32


def _backends() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


def test_make_run_holds_32_clients_with_gunicorn_and_bounded_connections(tmp_path, settings):
    settings.WEB_WORKERS, settings.WEB_THREADS = WORKERS, THREADS  # what `make run` reads
    with console_server(tmp_path, DATABASE_CONN_MAX_AGE="60") as base:
        peak, done, ready = [0], threading.Event(), threading.Event()

        def watch():  # its own connection; the baseline holds everything but the console
            try:
                baseline = _backends()
                ready.set()
                while not done.wait(0.05):
                    peak[0] = max(peak[0], _backends() - baseline)
            finally:
                connection.close()

        watcher = threading.Thread(target=watch)
        if connection.vendor == "postgresql":
            watcher.start()
            ready.wait(10)
        # Each request loads a session: a database query per request.
        with ThreadPoolExecutor(CLIENTS) as pool:
            statuses = list(
                pool.map(
                    lambda i: http(base + "/models/", headers={"Cookie": f"sessionid=nosuchsession{i:04d}"}).status,
                    range(CLIENTS * 5),
                )
            )
        done.set()
        if watcher.is_alive():
            watcher.join()
    assert set(statuses) == {302}, sorted(set(statuses))  # to the login page, never a 5xx
    if connection.vendor == "postgresql":
        assert 0 < peak[0] <= WORKERS * THREADS
