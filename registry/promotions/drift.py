"""Environment aliases move only through the promotion workflow: one that MLflow moved behind
Modelgate's back is drift. The registry's sync calls this when a model's aliases changed
(settings.REGISTRY_ALIAS_CHECKS); it records each drift, and the model page shows it."""

from console.audit.services import audit_record

from .selectors import alias_drift


def record_alias_drift(model, *, actor: str) -> None:
    for drift in alias_drift(model):
        audit_record(
            actor=actor,
            verb="alias.drift",
            obj=model,
            before={"alias": drift["alias"], "version": drift["expected"]},
            after={"alias": drift["alias"], "version": drift["actual"]},
        )
