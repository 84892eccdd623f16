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


def faulty_version(*, actor, model, store):
    """A version that answers the smoke predict (an all-zero row) and fails (HTTP 400) on any
    real row: a regression only real traffic shows (registry.demo_training.build_module)."""
    from registry.demo_training import log_model  # TensorFlow: imported by the tests that need it

    logged = log_model(
        tracking_uri=store.uri,
        experiment="tests",
        seed=7,
        metrics={"accuracy": 0.97},
        artifact_location=store.artifacts.as_uri(),
        faulty=True,
    )
    return version(actor=actor, model=model, logged=logged)
