"""Idempotency-Key for registration: the same key and body return the first result,
never a second version. The key row is inserted before MLflow is called, so the
unique constraint (user, key) is what stops a concurrent duplicate."""

import hashlib
import json
from dataclasses import dataclass

from django.db import IntegrityError, transaction

from console.errors import Conflict, ServiceError

from .models import IdempotencyKey

KEY_MAX = 255


@dataclass(frozen=True)
class Replay:
    status: int
    body: dict


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
        raise ServiceError("This Idempotency-Key was already used with a different request; use a new key.",
                           field="Idempotency-Key")
    if existing.response_status is None:
        raise Conflict("A request with this Idempotency-Key is still in progress; retry in a moment.")
    return Replay(existing.response_status, existing.response_body)


def idempotency_complete(claim: IdempotencyKey, *, status: int, body: dict) -> None:
    IdempotencyKey.objects.filter(pk=claim.pk).update(response_status=status, response_body=body)


def idempotency_release(claim: IdempotencyKey) -> None:
    """The request failed: free the key so the client can retry with it."""
    IdempotencyKey.objects.filter(pk=claim.pk, response_status__isnull=True).delete()
