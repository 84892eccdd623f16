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

        from django.contrib.auth.signals import user_login_failed

        from .lockout import on_login_failed

        user_login_failed.connect(on_login_failed, dispatch_uid="modelgate-audit-login-failed")
        # The API throttles count in the cache; in the embedded default that is a database
        # table, which `migrate` (so `manage.py up`, and the test database) makes here.
        post_migrate.connect(create_cache_table, sender=self, dispatch_uid="modelgate-cache-table")

        from .token_cache import connect_signals

        connect_signals()


def create_cache_table(using="default", verbosity=1, **kwargs):
    from django.core.management import call_command

    call_command("createcachetable", database=using, verbosity=0)
