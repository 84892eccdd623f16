from typing import Any

from django.conf import settings
from django.http import HttpRequest


def navigation(request: HttpRequest) -> dict[str, Any]:
    user = getattr(request, "user", None)
    return {
        "nav_section": getattr(request, "nav_section", ""),
        "mlflow_ui_url": settings.MLFLOW_UI_URL,
        "user_roles": sorted(user.groups.values_list("name", flat=True)) if user and user.is_authenticated else [],
    }
