"""Paths read from a version's artifacts stay inside them (issue 11, point 1).

Each test builds real artifacts on disk: a copy of a logged TensorFlow model whose MLmodel
points outside (``saved_model_dir: ../../outside/model``) or whose SavedModel directory is a
symlink to a SavedModel outside, with a real SavedModel waiting there, so that without the
checks the version would be marked servable and its outside files exported and served.
"""

import shutil
from pathlib import Path

import pytest
import yaml

from console.audit.models import AuditEvent
from deployer import manifests
from deployer.export import ExportError, export_version
from registry import services
from registry.artifact_paths import ArtifactPathError, check_mlmodel, check_relative, safe_subpath
from registry.models import ModelVersion
from registry.sync import registry_sync
from tests import factories
from tests.test_fetch_init_container import _run_fetch

pytestmark = pytest.mark.django_db


def _artifacts_of(logged) -> Path:
    return Path(logged.artifact_uri.removeprefix("file://"))


@pytest.fixture
def outside(mlflow_store, tmp_path) -> Path:
    """A real SavedModel outside every allowed root."""
    target = tmp_path / "outside" / "model"
    shutil.copytree(_artifacts_of(mlflow_store.template.models[1]) / "tf2model", target)
    return target


def _copy_model(mlflow_store, name: str) -> Path:
    dst = mlflow_store.allowed / name
    shutil.copytree(_artifacts_of(mlflow_store.template.models[0]), dst, symlinks=True)
    return dst


def _set_saved_model_dir(artifacts: Path, value: str) -> None:
    mlmodel = yaml.safe_load((artifacts / "MLmodel").read_text())
    mlmodel["flavors"]["tensorflow"]["saved_model_dir"] = value
    (artifacts / "MLmodel").write_text(yaml.safe_dump(mlmodel))


def _swap_for_symlink(artifacts: Path, outside: Path) -> None:
    shutil.rmtree(artifacts / "tf2model")
    (artifacts / "tf2model").symlink_to(outside, target_is_directory=True)


@pytest.mark.parametrize(
    "rel, why",
    [
        ("../../outside/model", "'..'"),
        ("tf2model/../../x", "'..'"),
        ("/etc", "absolute"),
        ("%2Fetc", "absolute"),
        ("file:///etc", "absolute"),
        ("a\\..\\b", "backslash"),
        ("a\nb", "control"),
    ],
)
def test_paths_that_could_leave_the_artifacts_are_refused(rel, why):
    with pytest.raises(ArtifactPathError, match=why):
        check_relative(rel, field="x")


def test_every_path_field_of_the_mlmodel_is_checked():
    check_mlmodel({"flavors": {"tensorflow": {"saved_model_dir": "tf2model"}, "python_function": {"data": "d"}}})
    with pytest.raises(ArtifactPathError, match=r"MLmodel flavors\.python_function\.env\.virtualenv"):
        check_mlmodel({"flavors": {"python_function": {"env": {"virtualenv": "../../../venv"}}}})


def test_a_symlink_inside_pointing_outside_is_refused(tmp_path, outside):
    root = tmp_path / "art"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "escape").symlink_to(outside)
    (root / "clean").mkdir()
    (root / "ok").symlink_to(root / "clean")
    with pytest.raises(ArtifactPathError, match="sub/escape"):
        safe_subpath(root, "sub", field="x")
    assert safe_subpath(root, "ok", field="x") == root / "ok"  # a symlink that stays inside is fine


@pytest.mark.parametrize("attack", ["mlmodel field", "symlink"])
def test_registration_refuses_artifacts_that_point_outside_and_keeps_nothing(
    attack, api, engineer, mlflow_store, outside
):
    model = factories.model(actor=engineer, name="iris")
    artifacts = _copy_model(mlflow_store, "evil")
    if attack == "mlmodel field":
        _set_saved_model_dir(artifacts, "../../outside/model")
    else:
        _swap_for_symlink(artifacts, outside)
    client = api(engineer)
    events = AuditEvent.objects.count()

    response = client.post("/api/v1/models/iris/versions/", {"source": artifacts.as_uri()}, format="json")

    assert response.status_code == 400, response.content
    detail = response.json()["detail"]
    assert ("MLmodel flavors.tensorflow.saved_model_dir" if attack == "mlmodel field" else "tf2model") in detail
    assert "outside" in detail or "'..'" in detail
    assert not ModelVersion.objects.filter(model=model).exists()
    assert mlflow_store.client().search_model_versions("name = 'iris'") == []  # deleted again in MLflow
    assert AuditEvent.objects.count() == events


def test_the_sync_mirrors_such_a_version_but_never_as_servable(engineer, mlflow_store, outside):
    factories.model(actor=engineer, name="iris")
    artifacts = _copy_model(mlflow_store, "evil")
    _set_saved_model_dir(artifacts, "../../outside/model")
    mlflow_store.client().create_model_version("iris", artifacts.as_uri())  # straight into MLflow

    registry_sync()

    version = ModelVersion.objects.get(model__name="iris", version=1)
    assert not version.servable and not version.savedmodel_path
    assert "saved_model_dir" in version.serving_note and "'..'" in version.serving_note


@pytest.fixture
def swapped_after_registration(engineer, mlflow_store, outside):
    """A version registered while its artifacts were sound; its SavedModel directory was then
    replaced by a symlink to a SavedModel outside (the artifact store changed under us)."""
    factories.model(actor=engineer, name="iris")
    artifacts = _copy_model(mlflow_store, "later")
    version = services.version_register(actor=engineer, model_name="iris", source=artifacts.as_uri())
    assert version.servable and version.savedmodel_path == "tf2model"
    _swap_for_symlink(artifacts, outside)
    return version


def test_the_local_export_checks_again_and_refuses(swapped_after_registration, tmp_path):
    with pytest.raises(ExportError, match="symlink to outside"):
        export_version(swapped_after_registration, tmp_path / "served")
    assert not (tmp_path / "served" / "iris" / "1").exists()


def test_the_local_export_refuses_a_stored_path_with_dotdot(swapped_after_registration, tmp_path):
    ModelVersion.objects.filter(pk=swapped_after_registration.pk).update(savedmodel_path="../../outside/model")
    swapped_after_registration.refresh_from_db()
    with pytest.raises(ExportError, match="'..'"):
        export_version(swapped_after_registration, tmp_path / "served")


@pytest.mark.parametrize("savedmodel_path", ["tf2model", "../../outside/model"])
def test_the_init_container_refuses_too(savedmodel_path, swapped_after_registration, mlflow_store, tmp_path):
    release = manifests.Release(
        model="iris", version=1, environment="staging", rollout_id=1, savedmodel_path=savedmodel_path
    )
    done = _run_fetch(release, tmp_path, mlflow_store.uri)
    assert done.returncode != 0
    assert "refused:" in done.stderr
    assert not (tmp_path / "models" / "iris" / "1").exists()
