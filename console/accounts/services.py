import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from console.audit.services import audit_record
from console.errors import NotFound, ServiceError

from . import token_cache
from .models import TOKEN_PREFIX, ApiToken, token_digest

# Writing last_used_at on every request would turn each API read into a write.
LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True)
class IssuedToken:
    token: ApiToken
    raw: str  # shown once, never stored


def token_create(*, user, name: str, expires_at=None) -> IssuedToken:
    name = (name or "").strip()
    if not name:
        raise ServiceError("Give the token a name, for example the CI job that will use it.", field="name")
    if len(name) > 100:
        raise ServiceError("Name is at most 100 characters.", field="name")
    if expires_at is not None and expires_at <= timezone.now():
        raise ServiceError("Expiry must be in the future.", field="expires_at")
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with transaction.atomic():
        token = ApiToken.objects.create(
            user=user, name=name, prefix=raw[:10], digest=token_digest(raw), expires_at=expires_at
        )
        audit_record(
            actor=user,
            verb="token.created",
            obj=token,
            after={"name": name, "prefix": token.prefix, "expires_at": expires_at.isoformat() if expires_at else None},
        )
    return IssuedToken(token=token, raw=raw)


def token_revoke(*, user, token_id: int) -> ApiToken:
    with transaction.atomic():
        token = ApiToken.objects.select_for_update().filter(id=token_id, user=user).first()
        if token is None:
            raise NotFound("No such token.")
        if token.revoked_at is None:
            token.revoked_at = timezone.now()
            token.save(update_fields=["revoked_at"])
            audit_record(
                actor=user,
                verb="token.revoked",
                obj=token,
                before={"revoked_at": None},
                after={"revoked_at": token.revoked_at.isoformat()},
            )
    return token


def token_authenticate(raw: str) -> ApiToken:
    """Find the token a request presents; raise ServiceError with the reason it is refused.

    The token, its user and the user's permissions come from ``token_cache`` when this
    process read them lately and nothing changed since: one cache read instead of three
    queries per request."""
    digest = token_digest(raw)
    current = token_cache.generation()
    token = token_cache.get(digest, current)
    if token is None:
        token = ApiToken.objects.select_related("user").filter(digest=digest).first()
        if token is not None and token.revoked_at is None and token.user.is_active:
            token_cache.put(digest, token, current)
            token = token_cache.get(digest, current) or token
    if token is None:
        raise ServiceError("Invalid token.")
    if token.revoked_at is not None:
        raise ServiceError("Token has been revoked; create a new one on the API tokens page.")
    if token.is_expired:
        raise ServiceError(f"Token expired at {token.expires_at:%Y-%m-%d %H:%M} UTC; create a new one.")
    if not token.user.is_active:
        raise ServiceError("The token's user is inactive.")
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
        token_cache.touch(digest, now)
    return token


def login_failure_record(*, username: str, ip_address: str, locked_out: bool) -> None:
    """Audit one refused login: ``login.failed`` for a wrong password, ``login.locked_out``
    for the try that started a lockout and every try refused while it lasts (right
    password or not). Called from the failed-login signal (console/accounts/apps.py)."""
    from django.contrib.auth import get_user_model

    username = (username or "")[:150]
    user = get_user_model().objects.filter(username=username).first() if username else None
    with transaction.atomic():
        audit_record(
            actor="anonymous",
            verb="login.locked_out" if locked_out else "login.failed",
            object_type="auth.user",
            object_id=str(user.pk) if user else "",
            object_repr=username or "(no username)",
            after={"username": username, "ip_address": ip_address, "known_user": user is not None},
        )
