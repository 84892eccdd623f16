"""`make run`: everything a fresh machine needs, then the console and a worker."""

import os
import signal
import subprocess
import sys

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from console.env import env_bool, env_str


def _interrupt(signum, frame):
    # Once: a second signal must not cut the clean-up short.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


class Command(BaseCommand):
    help = "Migrate, seed the demo once, start a Celery worker (with beat) and serve the console."

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
        worker = None
        if not no_worker:
            worker = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "console", "worker", "--beat", "--loglevel=INFO",
                 "--concurrency=2", f"--queues={settings.CELERY_TASK_DEFAULT_QUEUE},{settings.DEPLOY_QUEUE}",
                 f"--schedule={settings.CELERY_BEAT_SCHEDULE_FILENAME}"],
                env={**os.environ, "DJANGO_SETTINGS_MODULE": "console.settings"},
            )
        from deployer import local_runtime

        serving = local_runtime.start_all()
        # SIGTERM (from a process manager or `kill`) must clean up like Ctrl-C does.
        signal.signal(signal.SIGTERM, _interrupt)
        self._banner(bind, credentials, serving)
        try:
            call_command("runserver", bind, use_reloader=False, use_threading=True)
        except (KeyboardInterrupt, SystemExit):
            pass
        finally:
            local_runtime.stop_all()
            if worker is not None:
                worker.send_signal(signal.SIGTERM)
                try:
                    worker.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    worker.kill()

    def _banner(self, bind, credentials, serving):
        host = bind if ":" in bind else f"127.0.0.1:{bind}"
        lines = ["", f"Modelgate is up at http://{host}/", ""]
        if credentials:
            lines.append("Demo users (role = username, password):")
            lines += [f"  {role:<9} {password}" for role, password in credentials.items()]
            lines.append(f"(kept in {settings.VAR_DIR / 'demo-credentials.json'})")
        lines.append(f"MLflow store: {settings.MLFLOW_TRACKING_URI}")
        lines += [f"Serving: {line}" for line in serving]
        lines.append("")
        self.stdout.write(self.style.SUCCESS("\n".join(lines)))
