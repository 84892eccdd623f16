"""Idempotency-Key for registration: the same key and body return the first result,
never a second version. The key row is inserted before MLflow is called, so the
unique constraint (user, key) is what stops a concurrent duplicate.

A key always ends: a first request that failed releases it, and one that died without a
word (its process was killed, its database connection dropped) leaves an in-progress
marker that a retry takes over once it is IDEMPOTENCY_PENDING_SECONDS old. That is longer
than a request may run (gunicorn's timeout), so a live first request is never overtaken.
Whatever the dead request left in MLflow is undone by it or repaired by the sync."""

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from console.errors import Conflict, ServiceError

from .models import IdempotencyKey

KEY_MAX = 255


@dataclass(frozen=True)
class Replay:
    status: int
    body: dict | None  # the column allows null


def _digest(scope: str, body) -> str:
    return hashlib.sha256(json.dumps([scope, body], sort_keys=True, default=str).encode()).hexdigest()


def idempotency_claim(*, user, key: str, scope: str, body) -> IdempotencyKey | Replay:
    """Claim ``key`` for this request, or return the stored answer of an earlier one."""
    if not key or len(key) > KEY_MAX or not key.isprintable():
        raise ServiceError(f"Idempotency-Key must be 1 to {KEY_MAX} printable characters.", field="Idempotency-Key")
    digest = _digest(scope, body)
    try:
        with transaction.atomic():
            return IdempotencyKey.objects.create(user=user, key=key, scope=scope, request_digest=digest)
    except IntegrityError:
        pass
    existing = IdempotencyKey.objects.get(user=user, key=key)
    if existing.scope != scope or existing.request_digest != digest:
        raise ServiceError(
            "This Idempotency-Key was already used with a different request; use a new key.", field="Idempotency-Key"
        )
    if existing.response_status is None:
        now = timezone.now()
        expires = existing.created_at + timedelta(seconds=settings.IDEMPOTENCY_PENDING_SECONDS)
        if expires <= now:
            # The first request died; take its marker over (only one retry wins the update).
            taken = IdempotencyKey.objects.filter(
                pk=existing.pk, response_status__isnull=True, created_at=existing.created_at
            ).update(created_at=now)
            if taken:
                existing.created_at = now
                return existing
        wait = max(1, int((expires - now).total_seconds()) + 1)
        raise Conflict(
            f"A request with this Idempotency-Key is still in progress; retry in a moment. If it "
            f"died, the key is released after {settings.IDEMPOTENCY_PENDING_SECONDS} s (in {wait} s)."
        )
    return Replay(existing.response_status, existing.response_body)


def idempotency_complete(claim: IdempotencyKey, *, status: int, body: dict) -> None:
    IdempotencyKey.objects.filter(pk=claim.pk).update(response_status=status, response_body=body)


def idempotency_release(claim: IdempotencyKey) -> None:
    """The request failed: free the key so the client can retry with it."""
    IdempotencyKey.objects.filter(pk=claim.pk, response_status__isnull=True).delete()
