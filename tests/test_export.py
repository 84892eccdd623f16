"""A registered version is exported as TF Serving lays it out, and the local model server
(our TF Serving stand-in) serves it."""

import json
import urllib.request

import pytest

from deployer.export import ExportError, export_version
from deployer.manifests import Release, models_config
from tests import factories
from tfserving_dev.server import LocalModelServer

pytestmark = pytest.mark.django_db


@pytest.fixture
def iris_v2(engineer, mlflow_store):
    model = factories.model(actor=engineer, name="iris")
    return factories.version(actor=engineer, model=model, logged=mlflow_store.template.models[1])


def test_export_lays_out_model_version_saved_model(iris_v2, tmp_path):
    target = export_version(iris_v2, tmp_path)
    assert target == tmp_path / "iris" / "1"
    assert (target / "saved_model.pb").is_file() and (target / "variables").is_dir()
    assert [p.name for p in (tmp_path / "iris").iterdir()] == [target.name]  # no scratch left behind


def test_exporting_twice_changes_nothing(iris_v2, tmp_path):
    first = export_version(iris_v2, tmp_path)
    stamp = (first / "saved_model.pb").stat().st_mtime_ns
    assert export_version(iris_v2, tmp_path) == first
    assert (first / "saved_model.pb").stat().st_mtime_ns == stamp


def test_a_version_without_a_savedmodel_is_refused(iris_v2, tmp_path):
    iris_v2.servable, iris_v2.serving_note = False, "Keras model saved as a .keras file"
    with pytest.raises(ExportError, match=".keras"):
        export_version(iris_v2, tmp_path)
    assert not (tmp_path / "iris").exists()


def test_the_exported_version_is_served_by_the_local_model_server(iris_v2, tmp_path):
    export_version(iris_v2, tmp_path / "models")
    release = Release(
        model="iris",
        version=iris_v2.version,
        environment="staging",
        rollout_id=1,
        savedmodel_path=iris_v2.savedmodel_path,
    )
    config = tmp_path / "models.config"
    config.write_text(models_config(release).replace("/models/iris", str(tmp_path / "models" / "iris")))
    server = LocalModelServer(str(config)).start()
    try:
        server.wait_until_available("iris", iris_v2.version, timeout=60)
        request = urllib.request.Request(
            f"{server.url}/v1/models/iris/labels/staging:predict",
            data=json.dumps({"instances": [[5.1, 3.5, 1.4, 0.2]]}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            predictions = json.loads(response.read())["predictions"]
        assert len(predictions) == 1 and len(predictions[0]) == 3
        assert abs(sum(predictions[0]) - 1) < 1e-5
    finally:
        server.stop()
