from datetime import UTC, datetime, time

from django.contrib import messages
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from console.errors import ServiceError
from console.forms import add_service_error

from . import selectors
from .forms import TokenCreateForm
from .services import token_create, token_revoke


def token_list(request):
    """Each user manages their own tokens; the raw token is shown once, right after creation."""
    form = TokenCreateForm(request.POST or None)
    issued = None
    if request.method == "POST" and form.is_valid():
        day = form.cleaned_data["expires_on"]
        expires_at = datetime.combine(day, time.min, tzinfo=UTC) if day else None
        try:
            issued = token_create(user=request.user, name=form.cleaned_data["name"], expires_at=expires_at)
        except ServiceError as exc:
            add_service_error(form, exc, rename={"expires_at": "expires_on"})
        else:
            form = TokenCreateForm()
    tokens = selectors.token_list(request.user)
    response = render(
        request,
        "accounts/tokens.html",
        {"form": form, "tokens": tokens, "issued": issued},
        status=400 if form.errors else 200,
    )
    # The page may carry a freshly issued secret: never cache it anywhere.
    response["Cache-Control"] = "no-store"
    return response


@require_POST
def token_revoke_view(request, token_id):
    try:
        token = token_revoke(user=request.user, token_id=token_id)
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Token {token.name} revoked. Jobs using it now get 401.")
    return redirect("accounts:tokens")
