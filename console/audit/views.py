from datetime import date, datetime, time

from django.contrib.auth.decorators import permission_required
from django.core.paginator import Paginator
from django.utils import timezone

from console import perms
from console.htmx import render_page

from .selectors import audit_event_list, audit_verbs


def _day(value: str, *, end: bool = False):
    try:
        day = date.fromisoformat(value)
    except ValueError:
        return None
    moment = datetime.combine(day, time.max if end else time.min)
    return timezone.make_aware(moment, timezone.get_current_timezone())


@permission_required(perms.VIEW_AUDIT, raise_exception=True)
def audit_list(request):
    filters = {key: request.GET.get(key, "").strip()[:150] for key in ("object_type", "object_id", "actor", "verb")}
    since, until = request.GET.get("since", ""), request.GET.get("until", "")
    events = audit_event_list(**filters, since=_day(since), until=_day(until, end=True))
    page = Paginator(events, 50).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render_page(
        request,
        "audit/list.html",
        {
            "page": page,
            "filters": filters,
            "since": since,
            "until": until,
            "verbs": sorted(audit_verbs()),
            "query": query.urlencode(),
        },
        partial="results",
    )
