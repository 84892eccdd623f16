"""Domain objects for tests, made the way users make them: through the services."""

from itertools import count

from registry import services

_names = count(1)


def model(*, actor, name: str | None = None, **kwargs):
    return services.model_create(actor=actor, name=name or f"model-{next(_names)}", **kwargs)


def version(*, actor, model, logged, **kwargs):
    return services.version_register(
        actor=actor, model_name=model.name, source=logged.model_uri, run_id=logged.run_id, **kwargs
    )
