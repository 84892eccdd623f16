"""Logging a Keras 3 model: the code docs/api-for-ci.md shows gives a servable version, the
common mlflow.tensorflow.log_model path is explained exactly, and a version holding a Keras 3
archive converts to a SavedModel that a TF Serving server loads and answers with."""

import json
import re
from pathlib import Path

import mlflow
import numpy as np
import pytest

from console.audit.models import AuditEvent
from registry import services
from registry.models import ModelVersion

pytestmark = pytest.mark.usefixtures("mlflow_store")

DOCS = Path(__file__).resolve().parent.parent / "docs" / "api-for-ci.md"


def documented_code() -> str:
    """The first python block of the docs' section on logging a Keras model."""
    text = DOCS.read_text()
    section = text[text.index("## Logging a Keras model TF Serving can serve") :]
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


def log_with_mlflow_tensorflow(keras_model):
    """The common path: mlflow.tensorflow.log_model with a Keras 3 model stores data/model.keras."""
    mlflow.set_experiment("churn")
    with mlflow.start_run() as run:
        info = mlflow.tensorflow.log_model(keras_model, name="model")
    return info.model_uri, run.info.run_id


@pytest.mark.django_db(transaction=True)
def test_an_engineer_converts_a_keras_3_version_and_tf_serving_answers_with_it(
    api, browser_client, engineer, viewer, workdir, celery_eager, mlflow_store
):
    keras_model = tiny_keras_model()
    version = register(engineer, "churn", *log_with_mlflow_tensorflow(keras_model))
    assert not version.servable
    page = browser_client(engineer).get("/models/churn/versions/1/").content.decode()
    assert "Convert to a SavedModel" in page and "data/model.keras" in page
    url = "/api/v1/models/churn/versions/1/convert/"
    assert api(viewer).post(url).status_code == 403

    response = api(engineer).post(url)  # queued on commit; the eager "worker" runs it at once

    assert response.status_code == 202, response.content
    version.refresh_from_db()
    assert version.conversion_state == ModelVersion.CONVERSION_DONE, version.conversion_detail
    assert version.servable and version.savedmodel_path == "savedmodel"
    assert version.serving_note.startswith(
        "Serves savedmodel/, converted by Modelgate from the Keras 3 archive at data/model.keras"
    )
    # Logged to MLflow beside the original, which stays.
    base = mlflow_store.client().get_model_version_download_uri("churn", "1")
    listed = {Path(f.path).name for f in mlflow.artifacts.list_artifacts(artifact_uri=f"{base}/savedmodel")}
    assert {"saved_model.pb", "variables"} <= listed
    assert "model.keras" in {Path(f.path).name for f in mlflow.artifacts.list_artifacts(artifact_uri=f"{base}/data")}
    events = list(
        AuditEvent.objects.filter(object_id=str(version.pk), object_type="registry.modelversion")
        .order_by("id")
        .values_list("verb", "actor_name")
    )
    assert events[-3:] == [
        ("version.conversion_requested", engineer.username),
        ("version.artifact_logged", "worker"),
        ("version.converted", "worker"),
    ]
    logged = AuditEvent.objects.get(verb="version.artifact_logged", object_id=str(version.pk))
    assert logged.after == {"uri": f"{base}/savedmodel", "from": "data/model.keras"}

    # Safe twice: the task finds nothing to do, and asking again is refused with the reason.
    from registry.tasks import convert_keras_version

    assert convert_keras_version(version.pk) is None
    again = api(engineer).post(url)
    assert again.status_code == 400 and "servable already" in again.json()["detail"]
    assert AuditEvent.objects.filter(object_id=str(version.pk), verb__startswith="version.conv").count() == 2

    # TF Serving (the strict development server) loads the converted SavedModel and answers
    # what the Keras model answers.
    from deployer.export import export_version
    from deployer.manifests import Release, models_config
    from tfserving_dev.server import LocalModelServer

    exported = export_version(version, workdir / "models")
    release = Release(model="churn", version=1, environment="staging", rollout_id=1, savedmodel_path=".")
    rows = np.random.default_rng(1).random((3, 4), dtype=np.float32)
    with LocalModelServer(
        models_config(release, model_root=str(exported.parent.parent)),
        strict=True,
        allow_version_labels_for_unavailable_models=True,
    ) as server:
        _, servable = server.manager.servable("churn", label="staging")
        from tfserving_dev.tensors import dumps, predict

        answer = predict(servable, {"instances": rows.tolist()})
    # The answer as TF Serving writes it (its own float formatting), read back as a client would.
    predictions = json.loads(dumps(answer))["predictions"]
    np.testing.assert_allclose(np.array(predictions), keras_model.predict(rows, verbose=0), atol=1e-5)


@pytest.mark.django_db(transaction=True)
def test_a_damaged_keras_archive_fails_the_conversion_with_keras_reason(
    api, engineer, workdir, celery_eager, mlflow_store
):
    version = register(engineer, "churn", *log_with_mlflow_tensorflow(tiny_keras_model()))
    base = mlflow_store.client().get_model_version_download_uri("churn", "1")
    Path(base.removeprefix("file://"), "data", "model.keras").write_bytes(b"not a zip archive")

    assert api(engineer).post("/api/v1/models/churn/versions/1/convert/").status_code == 202

    version.refresh_from_db()
    assert version.conversion_state == ModelVersion.CONVERSION_FAILED and not version.servable
    assert version.conversion_detail.startswith("Keras could not load model.keras: ")
    assert AuditEvent.objects.filter(verb="version.conversion_failed", object_id=str(version.pk)).exists()
    page = api(engineer).get("/api/v1/models/churn/versions/1/").json()
    assert page["conversion_state"] == "failed" and page["keras_archive_path"] == "data/model.keras"


@pytest.mark.django_db
def test_only_a_version_with_a_keras_archive_can_be_converted(api, engineer, iris):
    response = api(engineer).post("/api/v1/models/iris/versions/1/convert/")
    assert response.status_code == 400
    assert "servable already" in response.json()["detail"]
