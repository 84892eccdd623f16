"""Form plumbing shared by every app's pages."""

from collections.abc import Mapping

from django import forms

from console.errors import ServiceError


def add_service_error(
    form: forms.BaseForm, exc: ServiceError, *, rename: Mapping[str, str] | None = None, fields_only: bool = False
) -> bool:
    """Show a service's refusal on ``form``: under the field it names, else above the form.

    ``rename`` maps a service's argument name to the form field that carries it. With
    ``fields_only`` a refusal that names none of the form's fields is left to the caller
    (a page that shows it in its banner instead). Returns whether the form now carries it.
    """
    field = (rename or {}).get(exc.field or "", exc.field)
    if field not in form.fields:
        if fields_only:
            return False
        field = None
    form.add_error(field, exc.message)
    return True
