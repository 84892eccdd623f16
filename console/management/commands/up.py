"""`make run`: everything a fresh machine needs, then the console, a worker and beat.

The terminal shows one banner once the console answers, then only warnings, errors and one
line per rollout or registry sync outcome; the full logs go to var/log/ (web.log, access.log,
worker.log, beat.log, up.log). Ctrl-C stops the console, then beat and the worker, then the
model servers, saying so. If the worker, beat or the console dies, `up` says so, stops the
rest and exits non-zero: a console whose approvals can no longer deploy is not left serving.
"""

import logging
import os
import shutil
import signal
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError
from django.utils import timezone

from console.env import env_bool, env_str
from console.supervise import Pair, spawn, stop

# Read once when TensorFlow is imported: set before anything imports it (the demo's training
# here, conversions in the worker, the development model servers), here and, inherited, in
# every child. TensorFlow otherwise prints its oneDNN and CPU-feature notes and absl's "before
# InitializeLog" line twice on every import. Values set in the environment win.
QUIET_ENVIRONMENT = {
    "TF_CPP_MIN_LOG_LEVEL": "1",
    "TF_ENABLE_ONEDNN_OPTS": "0",
    # Children write through pipes to their log files: line by line, not in 8 KB blocks.
    "PYTHONUNBUFFERED": "1",
}
POLL_SECONDS = 0.5


def _interrupt(signum, frame):
    # Once: a second signal must not cut the clean-up short.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


class Outcomes:
    """One terminal line per rollout that ends and per registry sync that changed something or
    failed, read from the rows the pages show (the tasks need not know about a terminal)."""

    def __init__(self):
        from registry.selectors import sync_state

        self.since, self.after_id = timezone.now(), 0
        state = sync_state()
        self.sync_finished, self.sync_ok = state.finished_at, state.ok

    def lines(self) -> list[str]:
        from deployer.selectors import rollouts_finished_after
        from registry.selectors import sync_state

        found = []
        for rollout in rollouts_finished_after(self.since, after_id=self.after_id):
            self.since, self.after_id = rollout.finished_at, rollout.pk
            found.append(self.rollout_line(rollout))
        state = sync_state()
        if state.finished_at and state.finished_at != self.sync_finished:
            line = self.sync_line(state, was_ok=self.sync_ok)
            self.sync_finished, self.sync_ok = state.finished_at, state.ok
            if line:
                found.append(line)
        return found

    @staticmethod
    def rollout_line(rollout) -> str:
        deployment = rollout.deployment
        version = f" v{rollout.version.version}" if rollout.version else ""
        took = f" after {rollout.duration.total_seconds():.0f} s" if rollout.duration else ""
        line = (
            f"Rollout: {deployment.model.name}{version} in {deployment.target.environment.name} "
            f"({rollout.get_kind_display().lower()}, revision {rollout.revision}): "
            f"{rollout.get_state_display().lower()}{took}"
        )
        if rollout.state not in rollout.GOOD and rollout.reason:
            line += f": {rollout.reason.strip().splitlines()[0][:200]}"
        return line

    @staticmethod
    def sync_line(state, *, was_ok: bool) -> str:
        if not state.ok:
            return f"Registry sync failed: {state.message.strip().splitlines()[0][:200]}" if was_ok else ""
        counts = state.counts or {}
        changes = [
            f"{counts[key]} {noun}{'' if counts[key] == 1 else 's'} {verb}"
            for key, noun, verb in (
                ("created", "model", "added"),
                ("changed", "model", "changed"),
                ("removed", "model", "removed"),
                ("versions_created", "version", "added"),
                ("versions_changed", "version", "changed"),
                ("versions_removed", "version", "removed"),
            )
            if counts.get(key)
        ]
        if changes:
            return f"Registry sync: {', '.join(changes)}"
        return "" if was_ok else "Registry sync: MLflow can be read again"


class Command(BaseCommand):
    help = (
        "Migrate, seed the demo once, start a Celery worker and beat (supervised together) and serve "
        "the console with gunicorn."
    )

    def add_arguments(self, parser):
        parser.add_argument("--bind", default=env_str("MODELGATE_BIND", "127.0.0.1:8000"))
        parser.add_argument("--no-worker", action="store_true", help="Do not start a Celery worker.")

    def handle(self, *args, bind, no_worker, **options):
        for name, value in QUIET_ENVIRONMENT.items():
            os.environ.setdefault(name, value)
        log_dir = settings.VAR_DIR / "log"
        log_dir.mkdir(parents=True, exist_ok=True)
        self._log_to_file(log_dir / "up.log")
        self.stdout.write(f"Starting Modelgate (full logs in {self._shown(log_dir)}/)…")
        call_command("migrate", interactive=False, verbosity=0)
        if settings.STATIC_MANIFEST:  # hashed names need the manifest collectstatic writes
            call_command("collectstatic", interactive=False, verbosity=0)
        credentials = {}
        if env_bool("MODELGATE_DEMO", True):
            from deployer.demo import seed_targets
            from registry.demo import seed_model, seed_users
            from registry.promotions.demo import seed_environments

            credentials = seed_users()
            seed_environments()
            seed_targets()
            seed_model(self.stdout)
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "console.settings"}
        from deployer import local_runtime

        # SIGTERM (from a process manager or `kill`) must clean up like Ctrl-C does.
        signal.signal(signal.SIGTERM, _interrupt)
        pair = web = failure = None
        try:
            if not no_worker:
                pair = self._celery(env, log_dir)
                pair.start()
            serving = local_runtime.start_all()
            web = spawn(
                self._gunicorn(bind, access_log=str(log_dir / "access.log")),
                {**env, "PROMETHEUS_MULTIPROC_DIR": self._metrics_dir()},
                log=log_dir / "web.log",
                label="web",
                echo=self.stderr.write,
            )
            failure = self._wait_until_serving(bind, web, pair)
            if failure is None:
                self._banner(bind, credentials, serving, log_dir)
                failure = self._watch(web, pair)
        except KeyboardInterrupt:
            self.stdout.write("")
        finally:
            # Ctrl-C again must not cut the clean-up short (it is bounded: at most about 40 s).
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            self._shutdown(web, pair, local_runtime, log_dir)
        if failure:
            raise CommandError(failure, returncode=1)

    def _celery(self, env: dict, log_dir: Path) -> Pair:
        """Worker and beat as two processes that live and die together (console/supervise.py).
        --quiet: their start-up banners would fill the terminal; their log files say the same."""
        celery = [sys.executable, "-m", "celery", "-A", "console", "--quiet"]
        return Pair(
            celery
            + [
                "worker",
                "--loglevel=INFO",
                "--concurrency=2",
                f"--queues={settings.CELERY_TASK_DEFAULT_QUEUE},{settings.DEPLOY_QUEUE}",
            ],
            celery + ["beat", "--loglevel=INFO", f"--schedule={settings.CELERY_BEAT_SCHEDULE_FILENAME}"],
            env=env,
            log_dir=log_dir,
            echo=self.stderr.write,
        )

    # --- watching -------------------------------------------------------------

    def _ended(self, web, pair) -> str | None:
        """Why Modelgate cannot go on, if one of its processes exited."""
        ended = pair.check() if pair is not None else None
        if ended is not None:
            name, proc = ended
            return (
                f"The Celery {name} (pid {proc.pid}) exited with code {proc.returncode}: approved promotions "
                f"could no longer deploy, so Modelgate stops. Its log: {self._shown(settings.VAR_DIR / 'log')}/"
                f"{name}.log"
            )
        if web.poll() is not None:
            return (
                f"The console (gunicorn, pid {web.pid}) exited with code {web.returncode}. Its log: "
                f"{self._shown(settings.VAR_DIR / 'log')}/web.log"
            )
        return None

    def _wait_until_serving(self, bind, web, pair, timeout: float = 300) -> str | None:
        """Until /healthz answers: gunicorn binds the port before its workers have loaded the app."""
        host, _, port = bind.rpartition(":")
        if not port.isdigit():  # a unix socket: nothing to knock on
            return None
        host = "127.0.0.1" if host in ("", "0.0.0.0", "[::]") else host  # noqa: S104 - compared, not bound
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            failure = self._ended(web, pair)
            if failure:
                return failure
            try:
                urllib.request.urlopen(f"http://{host}:{port}/healthz", timeout=5).close()  # noqa: S310 - our own http:// URL
                return None
            except urllib.error.HTTPError:  # an answer all the same (ALLOWED_HOSTS may not name this host)
                return None
            except (OSError, ValueError):
                pass
            time.sleep(0.3)
        return f"The console did not answer on {bind} within {timeout:.0f} s."

    def _watch(self, web, pair) -> str:
        """Until a process exits (or Ctrl-C): each rollout's and sync's outcome, one line each."""
        outcomes = None
        while True:
            failure = self._ended(web, pair)
            if failure:
                return failure
            try:
                outcomes = outcomes or Outcomes()
                for line in outcomes.lines():
                    self.stdout.write(f"{time.strftime('%H:%M:%S')} {line}")
            except DatabaseError as exc:  # the pages say it too; the processes are what matter here
                logging.getLogger(__name__).info("Could not read rollout outcomes: %s", exc)
            time.sleep(POLL_SECONDS)

    def _shutdown(self, web, pair, local_runtime, log_dir: Path) -> None:
        """The console first (no new approvals), then beat and the worker, then the model servers:
        no task ever runs against a model server that was stopped under it."""
        if web is not None and web.poll() is None:
            self.stdout.write(f"Stopping the console (gunicorn, pid {web.pid})…")
        stop(web)
        if pair is not None:
            running = [
                f"{name} (pid {proc.pid})"
                for name, proc in (("beat", pair.beat), ("worker", pair.worker))
                if proc is not None and proc.poll() is None
            ]
            if running:
                self.stdout.write(f"Stopping Celery {' and '.join(running)}…")
            pair.stop()
        stopped = local_runtime.stop_all()
        if stopped:
            self.stdout.write(f"Stopped the model server{'s' if len(stopped) > 1 else ''}: {', '.join(stopped)}.")
        self.stdout.write(f"Modelgate stopped. Logs: {self._shown(log_dir)}/")

    # --- pieces ---------------------------------------------------------------

    @staticmethod
    def _log_to_file(path: Path) -> None:
        """This process's own INFO records (migrations, MLflow, TensorFlow saving the demo model)
        go to ``path``; the terminal keeps its warnings and errors."""
        root = logging.getLogger()
        for handler in root.handlers:
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
                handler.setLevel(logging.WARNING)
        to_file = logging.FileHandler(path)
        to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        root.addHandler(to_file)

    @staticmethod
    def _shown(path: Path) -> str:
        """A path as short as it can be said: relative to the checkout when it is inside it."""
        try:
            return str(Path(path).resolve().relative_to(Path.cwd()))
        except ValueError:
            return str(path)

    @staticmethod
    def _gunicorn(bind: str, access_log: str = "-") -> list[str]:
        """The production server, sized by WEB_WORKERS x WEB_THREADS: that product bounds the
        database connections the console holds (one per thread)."""
        return [
            sys.executable,
            "-m",
            "gunicorn",
            "console.wsgi",
            "--bind",
            bind,
            "--workers",
            str(settings.WEB_WORKERS),
            "--threads",
            str(settings.WEB_THREADS),
            "--worker-class",
            "gthread",
            "--timeout",
            str(settings.WEB_TIMEOUT),
            "--graceful-timeout",
            "10",
            "--access-logfile",
            access_log,
            # No shared control socket in the home directory: several may run side by side.
            "--no-control-socket",
        ]

    @staticmethod
    def _metrics_dir() -> str:
        """Several gunicorn workers merge their request metrics through this directory."""
        given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if given:
            return given
        path = settings.VAR_DIR / "prometheus-web"
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return str(path)

    def _banner(self, bind, credentials, serving, log_dir: Path) -> None:
        host = bind if ":" in bind else f"127.0.0.1:{bind}"
        lines = ["", f"Modelgate is up at http://{host}/", ""]
        if credentials:
            lines.append("Demo users (username = role, then password):")
            lines += [f"  {role:<9} {password}" for role, password in credentials.items()]
            lines.append(f"(kept in {self._shown(settings.VAR_DIR / 'demo-credentials.json')})")
        lines.append(f"MLflow: {settings.MLFLOW_TRACKING_URI}")
        lines += [f"Serving: {line}" for line in serving]
        lines.append(
            f"Logs: {self._shown(log_dir)}/ (web, access, worker, beat). Below: warnings, errors, and each "
            "rollout's and registry sync's outcome. Ctrl-C stops everything."
        )
        lines.append("")
        self.stdout.write(self.style.SUCCESS("\n".join(lines)))
