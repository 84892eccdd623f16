"""The Kubernetes init container's script, run for real against an MLflow store: it must lay
out a version registered from models:/m-… and one registered from runs:/<run>/model."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from deployer import manifests
from registry import services
from tests import factories

pytestmark = pytest.mark.django_db


def _run_fetch(release: manifests.Release, root: Path, tracking_uri: str) -> subprocess.CompletedProcess:
    script = manifests.fetch_command(release)[-1]
    # The pod's paths, moved into this test's directory.
    script = script.replace(manifests.MODEL_ROOT + "/", f"{root}/models/").replace("/tmp/download", f"{root}/dl")
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": tracking_uri,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    return subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("source", ["logged model", "run artifact"])
def test_the_init_container_lays_out_the_savedmodel_whatever_the_source(source, engineer, mlflow_store, tmp_path):
    logged = mlflow_store.template.models[0]
    factories.model(actor=engineer, name="iris")
    uri = logged.model_uri if source == "logged model" else f"runs:/{logged.run_id}/model"
    version = services.version_register(actor=engineer, model_name="iris", source=uri, run_id=logged.run_id)
    assert version.servable, version.serving_note
    release = manifests.Release(
        model="iris",
        version=version.version,
        environment="staging",
        rollout_id=1,
        savedmodel_path=version.savedmodel_path,
    )
    done = _run_fetch(release, tmp_path, mlflow_store.uri)
    assert done.returncode == 0, done.stderr[-2000:]
    laid_out = tmp_path / "models" / "iris" / str(version.version)
    assert (laid_out / "saved_model.pb").is_file() and (laid_out / "variables").is_dir()
    assert not list((tmp_path / "models" / "iris").glob(".incoming-*"))
    # A second run (a restarted pod) finds it there and does nothing.
    assert _run_fetch(release, tmp_path, mlflow_store.uri).returncode == 0
