"""`make run`: everything a fresh machine needs, then the console and a worker."""

import os
import shutil
import signal
import sys

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from console.env import env_bool, env_str
from console.supervise import Pair, spawn, stop


def _interrupt(signum, frame):
    # Once: a second signal must not cut the clean-up short.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


class Command(BaseCommand):
    help = (
        "Migrate, seed the demo once, start a Celery worker and beat (supervised together) and serve "
        "the console with gunicorn."
    )

    def add_arguments(self, parser):
        parser.add_argument("--bind", default=env_str("MODELGATE_BIND", "127.0.0.1:8000"))
        parser.add_argument("--no-worker", action="store_true", help="Do not start a Celery worker.")

    def handle(self, *args, bind, no_worker, **options):
        call_command("migrate", interactive=False, verbosity=0)
        self.stdout.write("Database ready.")
        credentials = {}
        if env_bool("MODELGATE_DEMO", True):
            from deployer.demo import seed_targets
            from registry.demo import seed_model, seed_users
            from registry.promotions.demo import seed_environments

            credentials = seed_users()
            seed_environments()
            seed_targets()
            seed_model(self.stdout)
        pair = None
        if not no_worker:
            # Worker and beat as two processes that live and die together (console/supervise.py).
            celery = [sys.executable, "-m", "celery", "-A", "console"]
            pair = Pair(
                celery
                + [
                    "worker",
                    "--loglevel=INFO",
                    "--concurrency=2",
                    f"--queues={settings.CELERY_TASK_DEFAULT_QUEUE},{settings.DEPLOY_QUEUE}",
                ],
                celery + ["beat", "--loglevel=INFO", f"--schedule={settings.CELERY_BEAT_SCHEDULE_FILENAME}"],
                env={**os.environ, "DJANGO_SETTINGS_MODULE": "console.settings"},
            )
            pair.start()
            pair.watch()
        from deployer import local_runtime

        serving = local_runtime.start_all()
        # SIGTERM (from a process manager or `kill`) must clean up like Ctrl-C does.
        signal.signal(signal.SIGTERM, _interrupt)
        self._banner(bind, credentials, serving)
        web = None
        try:
            web = spawn(
                self._gunicorn(bind),
                {
                    **os.environ,
                    "DJANGO_SETTINGS_MODULE": "console.settings",
                    "PROMETHEUS_MULTIPROC_DIR": self._metrics_dir(),
                },
            )
            web.wait()
        except (KeyboardInterrupt, SystemExit):
            pass
        finally:
            stop(web)
            local_runtime.stop_all()
            if pair is not None:
                pair.stop()

    @staticmethod
    def _gunicorn(bind: str) -> list[str]:
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
            "-",
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

    def _banner(self, bind, credentials, serving):
        host = bind if ":" in bind else f"127.0.0.1:{bind}"
        lines = ["", f"Modelgate is up at http://{host}/", ""]
        if credentials:
            lines.append("Demo users (role = username, password):")
            lines += [f"  {role:<9} {password}" for role, password in credentials.items()]
            lines.append(f"(kept in {settings.VAR_DIR / 'demo-credentials.json'})")
        lines.append(f"MLflow store: {settings.MLFLOW_TRACKING_URI}")
        lines.append(
            f"Web: gunicorn, {settings.WEB_WORKERS} workers x {settings.WEB_THREADS} threads "
            f"(at most {settings.WEB_WORKERS * settings.WEB_THREADS} database connections)"
        )
        lines += [f"Serving: {line}" for line in serving]
        lines.append("")
        self.stdout.write(self.style.SUCCESS("\n".join(lines)))
