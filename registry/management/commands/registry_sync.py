from django.core.management.base import BaseCommand, CommandError

from registry import gateway
from registry.sync import registry_sync


class Command(BaseCommand):
    help = "Reconcile Modelgate's registry mirror with MLflow now."

    def handle(self, *args, **options):
        try:
            report = registry_sync()
        except gateway.MlflowError as exc:
            raise CommandError(f"MLflow could not be read: {exc}") from exc
        counts = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in report.as_dict().items())
        self.stdout.write(self.style.SUCCESS(f"Registry synced: {counts}."))
