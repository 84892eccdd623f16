"""The development model server answers as TensorFlow Serving does, with real SavedModels.

Versions 1 and 2 are the demo classifier with different seeds; version 3 is a directory
whose saved_model.pb is garbage, so it must fail to load while the others serve.
"""

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from deployer.manifests import Release, models_config
from deployer.tfserving import LATENCY_BUCKETS
from registry import demo_training
from tests.built_once import built_once
from tfserving_dev.config import ModelConfig, aspired_versions, parse_models_config, parse_monitoring_config
from tfserving_dev.errors import ServingError
from tfserving_dev.server import LocalModelServer
from tfserving_dev.tensors import load_savedmodel

ROOT = Path(__file__).resolve().parent.parent
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]


def _build_models(root: Path) -> None:
    import tensorflow as tf

    from registry.demo_training import build_module

    base = root / "iris"
    for version, seed in ((1, 1), (2, 2)):
        module = build_module(seed)
        tf.saved_model.save(module, str(base / str(version)), signatures={"serving_default": module.serve})
    (base / "3").mkdir(parents=True)
    (base / "3" / "saved_model.pb").write_bytes(b"not a protobuf \x00\xff\xfe")


@pytest.fixture(scope="module")
def model_root(request, tmp_path_factory) -> Path:
    """<root>/iris/{1,2,3}: two real SavedModels and a broken one (built once: tests/built_once.py)."""
    root, _ = built_once(
        request.config, tmp_path_factory, "local-server-models", _build_models, sources=(_build_models, demo_training)
    )
    return root


def config_text(root: Path, versions, labels=None, name="iris") -> str:
    policy = " ".join(f"versions: {v}" for v in versions)
    label_lines = "".join(f'    version_labels {{ key: "{k}" value: {v} }}\n' for k, v in (labels or {}).items())
    return (
        f'model_config_list {{\n  config {{\n    name: "{name}"\n    base_path: "{root / "iris"}"\n'
        f'    model_platform: "tensorflow"\n    model_version_policy {{ specific {{ {policy} }} }}\n'
        f"{label_lines}  }}\n}}\n"
    )


@pytest.fixture(scope="module")
def server(model_root, tmp_path_factory):
    path = tmp_path_factory.mktemp("config") / "models.config"
    path.write_text(config_text(model_root, [1, 2, 3], {"stable": 1, "canary": 2, "broken": 3}))
    with LocalModelServer(path) as running:
        running.wait_until_available("iris", 1, timeout=120)
        running.wait_until_available("iris", 2, timeout=120)
        running.wait_for_state("iris", 3, {"END"}, timeout=120)
        yield running


def call(url: str, body=None, method: str | None = None) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read().decode()


# --- configuration ---


def test_the_config_modelgate_renders_is_read():
    release = Release(model="iris", version=7, environment="production", rollout_id=1, savedmodel_path=".")
    (config,) = parse_models_config(models_config(release))
    assert config == ModelConfig(
        name="iris",
        base_path="/models/iris",
        platform="tensorflow",
        policy="specific",
        versions=(7,),
        labels=(("production", 7),),
    )


def test_several_configs_versions_and_labels_are_read():
    configs = parse_models_config("""
        # two models
        model_config_list {
          config { name: 'a' base_path: "/m/a" model_platform: "tensorflow"
                   model_version_policy { specific { versions: 1 versions: 2 } }
                   version_labels { key: "stable" value: 1 } version_labels { key: "canary" value: 2 } }
          config { name: "b", base_path: "/m/b", model_platform: "tensorflow" }
          config { name: "c" base_path: "/m/c" model_platform: "tensorflow"
                   model_version_policy { latest { num_versions: 2 } } }
          config < name: "d" base_path: "/m/d" model_platform: "tensorflow" model_version_policy: { all: {} } >
        }""")
    a, b, c, d = configs
    assert a.versions == (1, 2) and dict(a.labels) == {"stable": 1, "canary": 2}
    assert (b.policy, b.num_versions) == ("latest", 1)
    assert (c.policy, c.num_versions) == ("latest", 2)
    assert d.policy == "all"


@pytest.mark.parametrize(
    "text, where, words",
    [
        (
            'model_config_list {\n  config {\n    name: "x"\n    base_path: "/p"\n    colour: "red"\n  }\n}',
            "5:5",
            "colour",
        ),
        ('model_config_list {\n  config {\n    name: "x"\n    base_path: "/p"\n', "4:", 'Expected "}"'),
        ('model_config_list {\n  config { name: x base_path: "/p" }\n}', "2:", "string"),
        (
            'model_config_list {\n  config {\n name: "x" base_path: "/p"\n'
            ' model_version_policy { specific { versions: "1" } } } }',
            "4:",
            "integer",
        ),
        ('model_config_list {\n config { name: "x" base_path: "/p" } @ }', "2:", ""),
    ],
)
def test_a_config_that_does_not_parse_is_refused_and_the_log_names_the_line(text, where, words, caplog):
    with pytest.raises(ServingError, match="Invalid protobuf file: 'models.config'"):
        parse_models_config(text)
    (logged,) = [r.getMessage() for r in caplog.records if r.name == "tfserving_dev.config"]
    assert logged.startswith(f"Error parsing text-format tensorflow.serving.ModelServerConfig: {where}")
    assert words in logged


@pytest.mark.parametrize(
    "config, on_disk, expected",
    [
        (ModelConfig("m", "/p"), [1, 2, 10], {10}),
        (ModelConfig("m", "/p", policy="latest", num_versions=2), [1, 2, 10], {2, 10}),
        (ModelConfig("m", "/p", policy="all"), [1, 2], {1, 2}),
        (ModelConfig("m", "/p", policy="specific", versions=(2, 5)), [1, 2], {2}),
        (ModelConfig("m", "/p"), [], set()),
    ],
)
def test_aspired_versions_follow_the_policy_and_the_disk(config, on_disk, expected):
    assert aspired_versions(config, on_disk) == expected


def test_monitoring_config_chooses_the_metrics_path():
    assert parse_monitoring_config('prometheus_config {\n  enable: true\n  path: "/m/x"\n}\n') == "/m/x"
    assert parse_monitoring_config("prometheus_config { enable: false }") is None


# --- status ---


def test_status_lists_every_version_newest_first(server):
    status, body = call(f"{server.url}/v1/models/iris")
    assert status == 200
    versions = body["model_version_status"]
    assert [v["version"] for v in versions] == ["3", "2", "1"]
    assert versions[1] == {"version": "2", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
    assert versions[2]["state"] == "AVAILABLE"


def test_a_broken_version_ends_with_an_error_while_the_others_serve(server):
    status, body = call(f"{server.url}/v1/models/iris/versions/3")
    (broken,) = body["model_version_status"]
    assert status == 200 and broken["state"] == "END"
    assert broken["status"]["error_code"] not in ("OK", "")
    assert "saved_model.pb" in broken["status"]["error_message"]
    status, body = call(f"{server.url}/v1/models/iris/versions/3:predict", {"instances": ROWS})
    assert status == 404 and body == {"error": "Servable not found for request: Specific(iris, 3)"}


def test_status_of_one_version_and_of_a_label(server):
    _, by_version = call(f"{server.url}/v1/models/iris/versions/1")
    assert [v["version"] for v in by_version["model_version_status"]] == ["1"]
    # TF Serving's GetModelStatus ignores the label (get_model_status_impl.cc): every version.
    _, by_label = call(f"{server.url}/v1/models/iris/labels/stable")
    assert by_label == call(f"{server.url}/v1/models/iris")[1]


def test_the_readiness_probe_pattern_matches_the_status_body(server):
    # manifests.available_check greps the raw body for this pattern.
    assert '"state": "AVAILABLE"' in text(f"{server.url}/v1/models/iris/versions/2")


def test_loading_is_reported_before_available(model_root, tmp_path):
    release = threading.Event()

    def slow_loader(path):
        release.wait(timeout=60)
        return load_savedmodel(path)

    path = tmp_path / "models.config"
    path.write_text(config_text(model_root, [1]))
    with LocalModelServer(path, loader=slow_loader) as running:
        running.wait_for_state("iris", 1, {"LOADING"}, timeout=10)
        _, body = call(f"{running.url}/v1/models/iris/versions/1")
        assert body["model_version_status"][0]["state"] == "LOADING"
        status, body = call(f"{running.url}/v1/models/iris:predict", {"instances": ROWS})
        assert status == 404 and body["error"] == "Servable not found for request: Latest(iris)"
        release.set()
        assert running.wait_until_available("iris", 1, timeout=60)["state"] == "AVAILABLE"


# --- predict ---


def probabilities_ok(rows) -> bool:
    return len(rows) == len(ROWS) and all(len(r) == 3 and abs(sum(r) - 1) < 1e-4 for r in rows)


def test_predict_with_instances_for_each_version_and_a_label(server):
    answers = {}
    for where in ("versions/1", "versions/2", "labels/canary"):
        status, body = call(f"{server.url}/v1/models/iris/{where}:predict", {"instances": ROWS})
        assert status == 200, body
        assert probabilities_ok(body["predictions"])
        answers[where] = body["predictions"]
    assert answers["versions/1"] != answers["versions/2"]
    assert answers["labels/canary"] == answers["versions/2"]
    # float32 outputs are printed at float32 precision (at most 9 digits), as TF Serving prints them.
    assert all(np.float32(v) == v for row in answers["versions/1"] for v in row)


def test_predict_with_named_instances_and_a_signature_name(server):
    body = {"signature_name": "serving_default", "instances": [{"features": row} for row in ROWS]}
    status, answer = call(f"{server.url}/v1/models/iris/versions/1:predict", body)
    assert status == 200 and probabilities_ok(answer["predictions"])


def test_predict_with_columnar_inputs(server):
    _, rows = call(f"{server.url}/v1/models/iris/versions/1:predict", {"instances": ROWS})
    for inputs in (ROWS, {"features": ROWS}):
        status, body = call(f"{server.url}/v1/models/iris/versions/1:predict", {"inputs": inputs})
        assert status == 200 and body == {"outputs": rows["predictions"]}


def test_predict_without_a_version_uses_the_newest_available(server):
    _, latest = call(f"{server.url}/v1/models/iris:predict", {"instances": ROWS})
    _, v2 = call(f"{server.url}/v1/models/iris/versions/2:predict", {"instances": ROWS})
    assert latest == v2


def test_predictions_run_concurrently(server):
    results = []

    def ask():
        results.append(call(f"{server.url}/v1/models/iris/versions/1:predict", {"instances": ROWS}))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(results) == 8 and len({json.dumps(r) for r in results}) == 1 and results[0][0] == 200


def test_metadata_describes_the_signature(server):
    for where in ("", "/versions/2", "/labels/canary"):
        status, body = call(f"{server.url}/v1/models/iris{where}/metadata")
        assert status == 200
        assert body["model_spec"] == {"name": "iris", "signature_name": "", "version": "2"}
        signature = body["metadata"]["signature_def"]["signature_def"]["serving_default"]
        assert signature["method_name"] == "tensorflow/serving/predict"
        assert signature["inputs"]["features"] == {
            "dtype": "DT_FLOAT",
            "name": "serving_default_features:0",
            "tensor_shape": {"dim": [{"size": "-1", "name": ""}, {"size": "4", "name": ""}], "unknown_rank": False},
        }
        assert signature["outputs"]["probabilities"]["tensor_shape"]["dim"][1]["size"] == "3"


# --- errors ---


@pytest.mark.parametrize(
    "path, body, code, message",
    [
        ("/v1/models/nope:predict", {"instances": ROWS}, 404, "Servable not found for request: Latest(nope)"),
        (
            "/v1/models/iris/versions/9:predict",
            {"instances": ROWS},
            404,
            "Servable not found for request: Specific(iris, 9)",
        ),
        ("/v1/models/iris/labels/foo:predict", {"instances": ROWS}, 400, "Unrecognized servable version label: foo"),
        (
            "/v1/models/iris/versions/1:predict",
            {"inputs": {"colour": ROWS}},
            400,
            "Missing named input: features in 'inputs' object.",
        ),
        (
            "/v1/models/iris/versions/1:predict",
            {"instances": [{"colour": r} for r in ROWS]},
            400,
            "does not have named input: colour",
        ),
        ("/v1/models/iris/versions/1:predict", {"instances": [[1.0, 2.0, 3.0]]}, 400, ""),
        ("/v1/models/iris/versions/1:predict", b"{not json", 400, "JSON Parse error"),
        ("/v1/models/iris/versions/1:predict", {"rows": ROWS}, 400, "Missing 'inputs' or 'instances' key"),
        (
            "/v1/models/iris/versions/1:predict",
            {"signature_name": "x", "instances": ROWS},
            400,
            'Serving signature name: "x" not found in signature def',
        ),
    ],
)
def test_predict_errors_are_answered_as_tf_serving_does(server, path, body, code, message):
    status, answer = call(f"{server.url}{path}", body)
    assert status == code
    assert set(answer) == {"error"} and message in answer["error"]


@pytest.mark.parametrize(
    "path, method, code, message",
    [
        ("/v1/models/nope", "GET", 404, "Could not find any versions of model nope"),
        ("/v1/models/iris/versions/9", "GET", 404, "Could not find version 9 of model iris"),
        ("/v1/models/iris/labels/foo/metadata", "GET", 400, "Unrecognized servable version label: foo"),
        ("/v1/models/iris/versions/9/metadata", "GET", 404, "Servable not found for request: Specific(iris, 9)"),
        ("/v1/models/iris:predict", "GET", 400, "Malformed request: GET /v1/models/iris:predict"),
        ("/v1/models/iris", "DELETE", 400, "Malformed request: DELETE /v1/models/iris"),
        ("/v1/models", "GET", 400, "Missing model name in request."),
    ],
)
def test_other_errors(server, path, method, code, message):
    status, answer = call(f"{server.url}{path}", method=method)
    assert status == code and message in answer["error"]


# --- reload ---


def test_reload_switches_from_one_version_to_the_next(model_root, tmp_path):
    path = tmp_path / "models.config"
    path.write_text(config_text(model_root, [1], {"production": 1}))
    with LocalModelServer(path) as running:
        running.wait_until_available("iris", 1, timeout=120)
        path.write_text(config_text(model_root, [2], {"production": 2}))
        running.reload(path)
        running.wait_until_available("iris", 2, timeout=120)
        running.wait_for_state("iris", 1, {"END"}, timeout=30)
        _, body = call(f"{running.url}/v1/models/iris")
        states = {v["version"]: v["state"] for v in body["model_version_status"]}
        assert states == {"2": "AVAILABLE", "1": "END"}
        assert call(f"{running.url}/v1/models/iris/versions/1:predict", {"instances": ROWS})[0] == 404
        status, by_label = call(f"{running.url}/v1/models/iris/labels/production:predict", {"instances": ROWS})
        assert (
            status == 200
            and by_label == call(f"{running.url}/v1/models/iris/versions/2:predict", {"instances": ROWS})[1]
        )


def test_a_changed_config_file_is_picked_up_by_the_config_poll(model_root, tmp_path):
    path = tmp_path / "models.config"
    path.write_text(config_text(model_root, [1], {"staging": 1}))
    with LocalModelServer(path, config_poll_seconds=0.2) as running:
        running.wait_until_available("iris", 1, timeout=120)
        path.write_text("model_config_list { config { name: ")  # a bad edit: keep serving
        # Wait for the poller to read and refuse it (not a sleep: a slow machine must not pass
        # this by never having read the bad file).
        deadline = time.monotonic() + 30
        while running._reload_error is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert running._reload_error is not None, "the config poll never read the bad edit"
        assert call(f"{running.url}/v1/models/iris/versions/1")[0] == 200
        path.write_text(config_text(model_root, [2], {"staging": 2}))
        running.wait_until_available("iris", 2, timeout=120)
        running.wait_for_state("iris", 1, {"END"}, timeout=30)


def test_reload_accepts_config_text(model_root, tmp_path):
    path = tmp_path / "models.config"
    path.write_text(config_text(model_root, [1]))
    with LocalModelServer(path) as running:
        running.reload(config_text(model_root, [1, 2]))
        running.wait_until_available("iris", 2, timeout=120)
        running.wait_until_available("iris", 1, timeout=120)


# --- metrics ---


def families(url: str) -> dict:
    return {f.name: f for f in text_string_to_metric_families(text(url))}


def test_metrics_count_requests_and_latency_in_microseconds(model_root, tmp_path):
    path = tmp_path / "models.config"
    path.write_text(config_text(model_root, [1]))
    with LocalModelServer(path) as running:
        running.wait_until_available("iris", 1, timeout=120)
        for _ in range(3):
            assert call(f"{running.url}/v1/models/iris/versions/1:predict", {"instances": ROWS})[0] == 200
        for _ in range(2):
            assert call(f"{running.url}/v1/models/iris/versions/7:predict", {"instances": ROWS})[0] == 404
        raw = text(f"{running.url}/monitoring/prometheus/metrics")
        found = families(f"{running.url}/monitoring/prometheus/metrics")

    # Exactly TF Serving's lines: no _total suffix on the counter.
    assert ':tensorflow:serving:request_count{model_name="iris",status="OK"} 3' in raw.splitlines()
    assert ':tensorflow:serving:request_count{model_name="iris",status="NOT_FOUND"} 2' in raw.splitlines()
    counts = {s.labels["status"]: s.value for s in found[":tensorflow:serving:request_count"].samples}
    assert counts == {"OK": 3, "NOT_FOUND": 2}

    latency = found[":tensorflow:serving:request_latency"].samples
    series = {"model_name": "iris", "API": "predict", "entrypoint": "REST"}
    (count,) = [s.value for s in latency if s.name.endswith("_count") and s.labels == series]
    assert count == 3  # TF Serving records the latency of successful requests only
    buckets = {s.labels["le"]: s.value for s in latency if s.name.endswith("_bucket")}
    assert len(buckets) == len(LATENCY_BUCKETS) + 1 and buckets["10"] == 0
    assert float(max(buckets, key=lambda le: float(le))) == float("inf")
    # Microseconds: a local predict takes well under a second, i.e. under 1e6.
    under_a_second = max(le for le in map(float, buckets) if le <= 1e6)
    assert buckets[f"{under_a_second:g}"] == 3


# --- the command line ---


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_command_line_takes_the_manifest_arguments(model_root, tmp_path):
    release = Release(model="iris", version=2, environment="production", rollout_id=1, savedmodel_path=".")
    config = tmp_path / "models.config"
    config.write_text(models_config(release).replace("/models/iris", str(model_root / "iris")))
    monitoring = tmp_path / "monitoring.config"
    monitoring.write_text('prometheus_config {\n  enable: true\n  path: "/custom/metrics"\n}\n')
    port = free_port()
    log = (tmp_path / "server.log").open("w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tfserving_dev",
            "--port=8500",
            f"--rest_api_port={port}",
            f"--model_config_file={config}",
            f"--monitoring_config_file={monitoring}",
            "--allow_version_labels_for_unavailable_models=true",
        ],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    try:
        body = poll_until_available(f"http://127.0.0.1:{port}/v1/models/iris/versions/2", process, timeout=120)
        assert body["model_version_status"][0]["state"] == "AVAILABLE"
        status, answer = call(f"http://127.0.0.1:{port}/v1/models/iris/labels/production:predict", {"instances": ROWS})
        assert status == 200 and probabilities_ok(answer["predictions"])
        assert ":tensorflow:serving:request_count" in text(f"http://127.0.0.1:{port}/custom/metrics")
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()
    assert "gRPC is not served" in (tmp_path / "server.log").read_text()


def poll_until_available(url: str, process, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the server exited early"
        try:
            status, body = call(url)
            if status == 200 and body["model_version_status"][0]["state"] == "AVAILABLE":
                return body
        except (urllib.error.URLError, ConnectionError):
            pass
        time.sleep(0.25)
    raise AssertionError(f"{url} did not become AVAILABLE in {timeout} s")
