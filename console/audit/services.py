from django.db import transaction

from console.request_id import current_request_id

from .models import AuditEvent


def audit_record(
    *,
    actor,
    verb: str,
    obj=None,
    object_type: str = "",
    object_id: str = "",
    object_repr: str = "",
    before=None,
    after=None,
) -> AuditEvent:
    """Write one audit event. Must run inside the transaction of the change it records,
    so the trail and the state can never disagree."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("audit_record must be called inside transaction.atomic()")
    if obj is not None:
        object_type = object_type or obj._meta.label_lower
        object_id = object_id or str(obj.pk)
        object_repr = object_repr or str(obj)
    if isinstance(actor, str):
        user, actor_name = None, actor
    else:
        user, actor_name = actor, actor.get_username()
    return AuditEvent.objects.create(
        actor=user,
        actor_name=actor_name,
        verb=verb,
        object_type=object_type,
        object_id=object_id,
        object_repr=object_repr[:300],
        before=before,
        after=after,
        request_id=current_request_id(),
    )
