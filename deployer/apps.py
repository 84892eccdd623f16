from django.apps import AppConfig


class DeployerConfig(AppConfig):
    name = "deployer"
    verbose_name = "Deployer"

    def ready(self):
        from . import signals  # noqa: F401 - connects the worker start-up hook
