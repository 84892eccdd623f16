from django.apps import AppConfig
from django.db.models.signals import post_migrate


class AccountsConfig(AppConfig):
    name = "console.accounts"
    label = "accounts"
    verbose_name = "Accounts and API tokens"

    def ready(self):
        from .roles import ensure_roles

        # Permissions exist only after every app has migrated, so the role groups
        # are (re)built on post_migrate rather than in a migration.
        post_migrate.connect(ensure_roles, dispatch_uid="modelgate-ensure-roles")
