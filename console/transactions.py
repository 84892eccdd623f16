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

from console import outages

log = logging.getLogger(__name__)
# After a failed send, later sends in this process skip the broker for this long.
BROKER_BACKOFF_SECONDS = 5


def on_commit_safely(fn: Callable[[], object], *, what: str) -> None:
    """Run ``fn`` once the current transaction commits (at once outside one); never raise."""

    def run():
        if outages.is_down(outages.BROKER, within=BROKER_BACKOFF_SECONDS):
            # The broker failed a moment ago: do not make this request wait for it again.
            log.info("%s not queued: the broker is down.", what)
            return
        try:
            fn()
        except Exception as exc:  # one callback must never stop the next
            dependency = outages.dependency_of(exc)
            if dependency is not None:
                # Expected during an outage, and logged once by mark_down: no traceback.
                outages.mark_down(dependency, exc)
                log.info("%s not queued: %s", what, exc)
            else:
                log.exception("%s was not queued after commit.", what)
        else:
            outages.mark_up(outages.BROKER)

    transaction.on_commit(run)
