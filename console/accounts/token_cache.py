"""Each API token's user and permission set, kept briefly in the process that served it.

A CI system polling the API sends the same token many times a second; without this, every
request reads the token and its user, then the user's and its groups' permissions: three
queries, about a third of a list request's CPU (bench/results/profile-version-search.md).

Kept correct by a generation number in the shared cache (Redis in production, the cache table
in the embedded default): any change to a token, a user, a user's groups or permissions, or a
group's permissions bumps it (signals below), and every process drops what it holds the next
time it reads the number. So a revoked token or a removed role is refused at the next request,
in every process, not after the entries expire. Entries also expire after ``TTL`` seconds, so
a change made where no signal fires (raw SQL, another program) lasts at most that long.
"""

import copy
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.cache import cache
from django.db.models.signals import m2m_changed, post_delete, post_save

if TYPE_CHECKING:
    from .models import ApiToken

TTL = 30.0  # seconds
MAX_ENTRIES = 10_000
GENERATION_KEY = "accounts:auth-generation"


@dataclass
class Entry:
    token: "ApiToken"  # its user with the permission caches filled in
    generation: int
    loaded_at: float


_entries: dict[str, Entry] = {}
_lock = threading.Lock()


def generation() -> int:
    return cache.get_or_set(GENERATION_KEY, 1, timeout=None) or 1


def bump(**_signal_kwargs) -> None:
    """Make every process forget every cached token (called on any change that matters)."""
    try:
        cache.incr(GENERATION_KEY)
    except ValueError:  # not set yet (or evicted): any new value differs from what entries hold
        cache.set(GENERATION_KEY, int(time.time() * 1000), timeout=None)
    with _lock:
        _entries.clear()


def get(digest: str, current: int):
    """The cached token for ``digest`` (a copy, with its own user object), or None."""
    with _lock:
        entry = _entries.get(digest)
    if entry is None or entry.generation != current or time.monotonic() - entry.loaded_at > TTL:
        return None
    token = copy.copy(entry.token)
    # The user is copied too, so a view that sets an attribute on request.user changes only
    # its own request; the permission sets are shared and never modified.
    token.user = copy.copy(entry.token.user)
    return token


def put(digest: str, token, current: int) -> None:
    token.user.get_all_permissions()  # fills the user's permission caches, kept with it
    with _lock:
        if len(_entries) >= MAX_ENTRIES:
            _entries.clear()
        _entries[digest] = Entry(token=token, generation=current, loaded_at=time.monotonic())


def touch(digest: str, last_used_at: datetime) -> None:
    with _lock:
        entry = _entries.get(digest)
        if entry is not None:
            entry.token.last_used_at = last_used_at


def connect_signals() -> None:
    from .models import ApiToken

    user_model = get_user_model()

    def on_save(sender, created=False, update_fields=None, **kwargs):
        if created:  # a new token, user or group is in no cached entry yet
            return
        # The token's own last_used_at is written by authentication itself: not a change.
        if sender is ApiToken and update_fields is not None and set(update_fields) == {"last_used_at"}:
            return
        if sender is user_model and update_fields is not None and set(update_fields) <= {"last_login"}:
            return
        bump()

    for model in (ApiToken, user_model, Group):
        post_save.connect(on_save, sender=model, dispatch_uid=f"token-cache-save-{model._meta.label}")
        post_delete.connect(bump, sender=model, dispatch_uid=f"token-cache-delete-{model._meta.label}")
    for through in (user_model.groups.through, user_model.user_permissions.through, Group.permissions.through):
        m2m_changed.connect(bump, sender=through, dispatch_uid=f"token-cache-m2m-{through._meta.label}")
