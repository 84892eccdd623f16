"""Logging a Keras 3 model: the code docs/api-for-ci.md shows gives a servable version, the
common mlflow.tensorflow.log_model path is explained exactly, and a version holding a Keras 3
archive converts to a SavedModel that a TF Serving server loads and answers with."""

import re
from pathlib import Path

import mlflow
import numpy as np
import pytest

from console.audit.models import AuditEvent
from registry import services
from registry.models import ModelVersion

DOCS = Path(__file__).resolve().parent.parent / "docs" / "api-for-ci.md"


def documented_code() -> str:
    """The first python block of the docs' section on logging a Keras model."""
    text = DOCS.read_text()
    section = text[text.index("## Logging a Keras model TF Serving can serve"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A training job's working directory: experiments it creates keep artifacts under it."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def register(engineer, name, source, run_id) -> ModelVersion:
    if not services.RegisteredModel.objects.filter(name=name).exists():
        services.model_create(actor=engineer, name=name)
    return services.version_register(actor=engineer, model_name=name, source=source, run_id=run_id)


@pytest.mark.django_db
def test_the_documented_keras_logging_code_gives_a_servable_version(engineer, workdir, settings):
    scope: dict = {}
    exec(compile(documented_code(), str(DOCS), "exec"), scope)  # noqa: S102 - the docs' own code

    version = register(engineer, "churn", scope["source"], scope["run_id"])

    assert version.servable, version.serving_note
    assert version.savedmodel_path == "data/model" and version.keras_archive_path == ""
    assert version.signature["inputs"][0]["shape"] == [-1, 4]


@pytest.mark.django_db
def test_mlflow_tensorflow_log_model_with_keras_3_says_what_it_found_and_what_to_do(engineer, workdir):
    keras_model = tiny_keras_model()
    mlflow.set_experiment("churn")
    with mlflow.start_run() as run:
        info = mlflow.tensorflow.log_model(keras_model, name="model")

    version = register(engineer, "churn", info.model_uri, run.info.run_id)

    assert not version.servable and version.keras_archive_path == "data/model.keras"
    assert version.serving_note.startswith("Holds a Keras 3 .keras archive at data/model.keras, not a SavedModel")
    assert "save_exported_model=True" in version.serving_note and "saved_model.pb" in version.serving_note
    assert "holds no saved_model.pb" not in version.serving_note


def tiny_keras_model():
    import keras

    keras.utils.set_random_seed(7)
    model = keras.Sequential([keras.Input(shape=(4,)), keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x = np.random.default_rng(7).random((32, 4), dtype=np.float32)
    model.fit(x, np.arange(32) % 3, epochs=1, verbose=0)
    return model
