"""Work queued after a commit, each piece on its own.

Django runs a transaction's on-commit callbacks in order and stops at the first that
raises, so a failed e-mail send (the broker is down) would drop the deployment queued
after it. ``on_commit_safely`` isolates each callback: a failure is logged in one line and
the next callback still runs. Whatever was lost is owed by a row the database already
holds (an approved request, a queued rollout) and a periodic sweep sends it again
(``deployer.resume_rollouts``).
"""

import logging
from collections.abc import Callable

from django.db import transaction

log = logging.getLogger(__name__)


def on_commit_safely(fn: Callable[[], object], *, what: str) -> None:
    """Run ``fn`` once the current transaction commits (at once outside one); never raise."""

    def run():
        try:
            fn()
        except Exception as exc:  # one callback must never stop the next
            # A broker outage is expected and already reported by the readiness check: one line,
            # no traceback. Anything else is a bug worth its traceback.
            expected = isinstance(exc, OSError) or type(exc).__module__.startswith(("kombu", "redis", "amqp"))
            log.warning("%s was not queued after commit (%s: %s).", what, type(exc).__name__, exc,
                        exc_info=not expected)

    transaction.on_commit(run)
