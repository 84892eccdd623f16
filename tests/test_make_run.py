"""`make run` (`manage.py up`) as a person meets it: a short banner and then only warnings,
errors and outcomes on the terminal, full logs in var/log/; Ctrl-C stops everything and
leaves no process and no pid file; a dead worker stops it with a message and a failure code.

The end-to-end tests run `manage.py up` as a real process on a temporary data directory and
a free port, exactly as `make run` does."""

import os
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from console.management.commands.up import Outcomes
from console.supervise import Pair, notable
from deployer.models import Deployment, DeploymentTarget, Rollout
from registry.models import ModelVersion, RegisteredModel, SyncState
from registry.promotions.models import Environment
from tests.live_console import free_port, http

ROOT = Path(__file__).resolve().parent.parent
OWN_CODE_WARNING = re.compile(
    r"(console|registry|deployer)[/.]\S*(\.py:\d+: \w*Warning| WARNING)|WARNING (console|registry|deployer)\."
)
NOISE = ("No hostname was supplied", "oneDNN", "absl::InitializeLog", "BuildBackendWarning", "INFO")


# --- what reaches the terminal --------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "previous", "shown"),
    [
        ("[2026-11-30 13:13:47,021: INFO/MainProcess] Scheduler: Sending due task deployer-guard", False, False),
        ("[2026-11-30 13:13:47,021: WARNING/MainProcess] Task x retrying", False, True),
        ("[2026-11-30 13:13:47,021: ERROR/ForkPoolWorker-1] Task x raised", False, True),
        ("[2026-11-30 13:13:11 +0000] [13936] [INFO] Booting worker with pid: 13972", True, False),
        ("[2026-11-30 13:13:11 +0000] [13936] [CRITICAL] WORKER TIMEOUT (pid:13972)", False, True),
        ("2026-11-30 13:12:35,732 INFO matplotlib.font_manager generated new fontManager", True, False),
        ("2026-11-30 13:12:35,732 ERROR django.request Internal Server Error: /models/", False, True),
        ("2026/11/30 13:12:28 INFO mlflow.store.db.utils: Creating initial MLflow database tables...", True, False),
        ("2026/11/30 13:12:28 WARNING mlflow.utils: Something to know", False, True),
        ("I0000 00:00:1796044352.252156   11977 port.cc:153] oneDNN custom operations are on.", True, False),
        ("E0000 00:00:1796044352.252156   11977 loader.cc:1] could not load", False, True),
        ("/venv/celery/platforms.py:893: SecurityWarning: You're running the worker with superuser", False, True),
        ("Traceback (most recent call last):", False, True),
        ('  File "/app/deployer/tasks.py", line 3, in run', True, True),  # a traceback goes on
        ("absolutely not recommended!", True, True),  # a warning's message goes on
        (" -------------- celery@vm v5.7.0 (collider)", False, False),  # banners stay in the log
    ],
)
def test_the_terminal_gets_warnings_errors_and_what_continues_them(line, previous, shown):
    assert notable(line, previous) is shown


def test_a_sync_is_one_line_when_it_changed_something_or_started_or_stopped_failing():
    quiet = SyncState(ok=True, counts={"created": 0, "versions_created": 0, "inspected": 3})
    assert Outcomes.sync_line(quiet, was_ok=True) == ""
    changed = SyncState(ok=True, counts={"created": 1, "versions_changed": 2})
    assert Outcomes.sync_line(changed, was_ok=True) == "Registry sync: 1 model added, 2 versions changed"
    failed = SyncState(ok=False, message="MLflow could not be read: connection refused\nmore")
    assert (
        Outcomes.sync_line(failed, was_ok=True) == "Registry sync failed: MLflow could not be read: connection refused"
    )
    assert Outcomes.sync_line(failed, was_ok=False) == ""  # still failing: said already
    assert Outcomes.sync_line(quiet, was_ok=False) == "Registry sync: MLflow can be read again"


def test_a_rollout_is_one_line_with_its_end_and_why_it_failed():
    started = timezone.now()
    deployment = Deployment(
        model=RegisteredModel(name="iris"), target=DeploymentTarget(environment=Environment(name="staging"))
    )
    rollout = Rollout(
        deployment=deployment,
        version=ModelVersion(version=2),
        revision=3,
        kind=Rollout.DEPLOY,
        state=Rollout.LIVE,
        started_at=started,
        finished_at=started + timedelta(seconds=12),
    )
    assert Outcomes.rollout_line(rollout) == "Rollout: iris v2 in staging (deploy, revision 3): live after 12 s"
    rollout.state, rollout.reason = Rollout.FAILED, "version 2 could not load: NOT_FOUND\nmore detail"
    assert Outcomes.rollout_line(rollout) == (
        "Rollout: iris v2 in staging (deploy, revision 3): failed after 12 s: version 2 could not load: NOT_FOUND"
    )


def test_beat_does_not_outlive_a_killed_worker_and_nothing_restarts_them():
    pair = Pair(["sleep", "300"], ["sleep", "300"])
    pair.start()
    try:
        worker, beat = pair.worker, pair.beat
        assert pair.check() is None  # nothing to do while both run
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(5)
        assert pair.check() == ("worker", worker)
        assert beat.poll() is not None, "beat was stopped with its worker"
        assert pair.worker is worker and pair.beat is beat, "no new pair was started"
    finally:
        pair.stop()


# --- `manage.py up` as a process ------------------------------------------------------------


class Up:
    """`manage.py up` on its own data directory and port, its terminal output read line by line."""

    def __init__(self, var: Path, *, demo: bool):
        self.var, self.port = var, free_port()
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("MLFLOW_", "DEPLOYER_", "CELERY_", "DATABASE_", "TF_"))
            and key not in ("CACHE_URL", "STATIC_ROOT", "PROMETHEUS_MULTIPROC_DIR", "MODELGATE_ALLOWED_SOURCE_ROOTS")
        }
        env.update(
            MODELGATE_VAR_DIR=str(var),
            MODELGATE_DEMO="true" if demo else "false",
            DJANGO_SETTINGS_MODULE="console.settings",
            PYTHONUNBUFFERED="1",  # as a terminal would show it: line by line
            WEB_WORKERS="1",
            WEB_THREADS="2",
        )
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "up", "--bind", f"127.0.0.1:{self.port}"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float = 420) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            assert self._reader.is_alive(), f"up exited with {self.proc.poll()}:\n" + "\n".join(self.lines)
            assert time.monotonic() < deadline, f"no {text!r} after {timeout:.0f} s:\n" + "\n".join(self.lines)
            time.sleep(0.2)

    def serves(self) -> bool:
        try:
            return http(f"http://127.0.0.1:{self.port}/login/", timeout=30).status == 200
        except OSError:
            return False

    def descendants(self) -> dict[int, str]:
        """Every process below `up`, with its command line."""
        parents: dict[int, int] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                text = stat.read_text()
            except OSError:
                continue
            parents[int(stat.parent.name)] = int(text[text.rindex(")") + 2 :].split()[1])
        found, frontier = {}, {self.proc.pid}
        while frontier:
            frontier = {pid for pid, parent in parents.items() if parent in frontier}
            for pid in frontier:
                try:
                    found[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
                except OSError:
                    pass
        return found

    def finish(self, timeout: float = 180) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(10)
        return code

    def kill(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def _running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


def _model_server_that_outlives_its_worker(var: Path) -> subprocess.Popen:
    """A process recorded as a local deployment's model server, as a worker leaves one: in its
    own session, its pid file beside it."""
    server = subprocess.Popen(["sleep", "600"], start_new_session=True)
    stat = Path(f"/proc/{server.pid}/stat").read_text()
    started = stat[stat.rindex(")") + 2 :].split()[19]
    (var / "deployments" / "iris-staging").mkdir(parents=True)
    (var / "deployments" / "iris-staging" / "server.pid").write_text(f"{server.pid} {started}")
    # And one whose process is long gone: a pid file that only misleads.
    (var / "deployments" / "old-staging").mkdir()
    (var / "deployments" / "old-staging" / "server.pid").write_text("999999999 12345")
    return server


@pytest.mark.slow
def test_make_run_shows_a_short_banner_and_ctrl_c_leaves_no_process_and_no_pid_file(tmp_path):
    var = tmp_path / "var"
    var.mkdir()
    server = _model_server_that_outlives_its_worker(var)
    up = Up(var, demo=True)
    try:
        up.wait_for("Ctrl-C stops everything")
        assert up.serves()
        before = list(up.lines)
        assert len(before) <= 25, "\n".join(before)
        assert any("Modelgate is up at http://127.0.0.1:" in line for line in before)
        assert any("demo-credentials.json" in line for line in before)
        children = up.descendants()
        assert any("celery" in cmd and " worker" in cmd for cmd in children.values()), children
        assert any("celery" in cmd and " beat" in cmd for cmd in children.values()), children
        assert any("gunicorn" in cmd for cmd in children.values()), children
        assert not (var / "deployments" / "old-staging" / "server.pid").exists(), "a stale pid file is removed"

        up.proc.send_signal(signal.SIGINT)  # what Ctrl-C sends to `make run`
        assert up.finish() == 0, "\n".join(up.lines)
    finally:
        up.kill()
        server.kill()
        server.wait()
    said = "\n".join(up.lines)
    assert "Stopping the console (gunicorn" in said
    assert "Stopping Celery beat" in said and "worker (pid" in said
    assert "Stopped the model server: iris-staging." in said
    assert said.index("Stopping Celery") < said.index("Stopped the model server"), "the worker stops first"
    leftover = [pid for pid in [*children, server.pid] if _running(pid)]
    assert not leftover, {pid: children.get(pid, "model server") for pid in leftover}
    assert not list((var / "deployments").glob("*/server.pid"))
    for line in up.lines:
        assert not OWN_CODE_WARNING.search(line), line
        assert not any(noise in line for noise in NOISE), line
    logs = var / "log"
    assert "celery@" in (logs / "worker.log").read_text() or "ready" in (logs / "worker.log").read_text()
    assert "beat: Starting" in (logs / "beat.log").read_text()
    assert "Booting worker" in (logs / "web.log").read_text()
    assert "GET /login/" in (logs / "access.log").read_text()


@pytest.mark.slow
def test_a_killed_worker_makes_make_run_say_so_and_exit_with_a_failure(tmp_path):
    up = Up(tmp_path / "var", demo=False)
    try:
        up.wait_for("Ctrl-C stops everything")
        children = up.descendants()
        worker = next(
            pid
            for pid, cmd in children.items()
            if "celery" in cmd and " worker" in cmd and children_parent(pid) == up.proc.pid
        )
        os.kill(worker, signal.SIGKILL)
        code = up.finish(timeout=120)
    finally:
        up.kill()
    said = "\n".join(up.lines)
    assert code != 0, said
    assert f"The Celery worker (pid {worker}) exited" in said
    assert "could no longer deploy" in said
    leftover = [pid for pid in children if _running(pid)]
    assert not leftover, {pid: children[pid] for pid in leftover}


def children_parent(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2 :].split()[1])
