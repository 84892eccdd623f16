from .models import AuditEvent


def audit_event_list(
    *, object_type: str = "", object_id: str = "", actor: str = "", verb: str = "", since=None, until=None
):
    qs = AuditEvent.objects.all()
    if object_type:
        qs = qs.filter(object_type=object_type)
    if object_id:
        qs = qs.filter(object_id=object_id)
    if actor:
        qs = qs.filter(actor_name=actor)
    if verb:
        # "model." matches every model verb; an exact verb matches itself.
        qs = qs.filter(verb__startswith=verb) if verb.endswith(".") else qs.filter(verb=verb)
    if since:
        qs = qs.filter(created_at__gte=since)
    if until:
        qs = qs.filter(created_at__lt=until)
    return qs.order_by("-created_at", "-id")


def audit_verbs() -> list[str]:
    return list(AuditEvent.objects.order_by().values_list("verb", flat=True).distinct())
