"""`manage.py loadgen iris-classifier/staging --rps 20 --duration 60`"""

import itertools

from django.core.management.base import BaseCommand, CommandError

from deployer import loadgen, tfserving
from deployer.backends import backend_for
from deployer.backends.errors import BackendError
from deployer.models import Deployment
from deployer.pipeline import Run


def find_deployment(ref: str) -> Deployment:
    qs = Deployment.objects.select_related("target__environment", "model", "live_rollout__version")
    if ref.isdigit():
        deployment = qs.filter(pk=int(ref)).first()
    else:
        model, _, environment = ref.rpartition("/")
        deployment = qs.filter(model__name=model, target__environment__name=environment).first()
    if deployment is None:
        raise CommandError(
            f"No deployment {ref!r}: give its id or <model>/<environment>, "
            "e.g. iris-classifier/staging (see /deployments/)."
        )
    if not deployment.is_serving:
        raise CommandError(f"{deployment} is not serving; promote a version there first.")
    return deployment


class Command(BaseCommand):
    help = "Send predict requests to a deployment at a steady rate and print what was measured."

    def add_arguments(self, parser):
        parser.add_argument("deployment", help="id, or <model>/<environment>")
        parser.add_argument("--rps", type=float, default=10.0)
        parser.add_argument("--duration", type=float, default=30.0, help="seconds")
        parser.add_argument(
            "--bad-fraction",
            type=float,
            default=0.0,
            help="share of malformed requests (TF Serving answers 400), to see errors",
        )
        parser.add_argument("--workers", type=int, default=4)

    def handle(self, *args, deployment, rps, duration, bad_fraction, workers, **options):
        if rps <= 0 or duration <= 0 or not 0 <= bad_fraction <= 1:
            raise CommandError("--rps and --duration must be positive and --bad-fraction within 0..1.")
        deployment = find_deployment(deployment)
        rollout = deployment.live_rollout
        release = Run(rollout, "loadgen").release()
        backend = backend_for(deployment)
        path = f"{tfserving.model_path(release.model, label=release.environment)}:predict"
        try:
            replicas = [a.replica for a in backend.call(release, "GET", tfserving.model_path(release.model))]
        except BackendError as exc:
            raise CommandError(f"{deployment} does not answer: {exc}") from exc
        targets = itertools.cycle(replicas or ["?"])

        def send(body):
            # Round-robin over the replicas, as a Service would spread the load.
            return backend.call_one(release, next(targets), "POST", path, body)

        self.stdout.write(
            f"Sending {rps:g} requests/s for {duration:g} s to {deployment} "
            f"(v{rollout.version.version}, {len(replicas)} replica(s))…"
        )
        report = loadgen.run(
            send,
            signature=rollout.version.signature,
            rps=rps,
            duration=duration,
            bad_fraction=bad_fraction,
            workers=workers,
        )
        for line in report.lines():
            self.stdout.write(line)
