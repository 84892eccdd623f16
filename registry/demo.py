"""Seed the embedded default, once: demo users for each role and a real TF model
registered with two versions, so a newcomer has something to look at."""

import json
import os
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from console.accounts.roles import ADMIN, ROLES

from . import gateway, services

DEMO_MODEL = "iris-classifier"
CREDENTIALS_FILE = "demo-credentials.json"


def _credentials_path():
    return settings.VAR_DIR / CREDENTIALS_FILE


def seed_users() -> dict:
    """One user per role, named after it, with a random password kept in var/ (mode 600)."""
    path = _credentials_path()
    saved = json.loads(path.read_text()) if path.exists() else {}
    User = get_user_model()
    for role in ROLES:
        if role in saved and User.objects.filter(username=role).exists():
            continue
        password = secrets.token_urlsafe(9)
        user, _ = User.objects.get_or_create(username=role, defaults={"email": f"{role}@example.com"})
        user.set_password(password)
        user.is_staff = user.is_superuser = role == ADMIN
        user.save()
        user.groups.add(Group.objects.get(name=role))
        saved[role] = password
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(saved, fh, indent=2)
    return saved


def seed_model(stdout=None) -> None:
    """Train and register the demo model unless MLflow already has it."""
    try:
        gateway.get_registered_model(DEMO_MODEL)
        return
    except gateway.MlflowNotFound:
        pass
    from .demo_training import log_model

    engineer = get_user_model().objects.get(username="engineer")
    if stdout:
        stdout.write("Training the demo model (a small TensorFlow SavedModel)…")
    model = services.model_create(
        actor=engineer,
        name=DEMO_MODEL,
        description="Demo: classifies iris flowers from four measurements.",
        tags={"team": "demo", "task": "classification"},
    )
    for seed, accuracy in ((1, 0.91), (2, 0.95)):
        logged = log_model(
            tracking_uri=settings.MLFLOW_TRACKING_URI,
            experiment="modelgate-demo",
            artifact_location=settings.MLFLOW_ARTIFACT_ROOT.rstrip("/") + "/demo",
            seed=seed,
            metrics={"accuracy": accuracy, "loss": round(1 - accuracy, 3)},
            params={"optimizer": "adam", "epochs": 20},
        )
        services.version_register(
            actor=engineer,
            model_name=model.name,
            source=logged.model_uri,
            run_id=logged.run_id,
            description=f"Trained with seed {seed}.",
        )
