"""TF Serving conformance: the development model server held against TensorFlow Serving's own
test cases and REST documentation.

Every case names its source in tensorflow/serving: the comment above it gives path:line, the
line of the assertion (or of the code) the case reproduces, counted in the file at the commit
listed in docs/tfserving-dev.md ("kh3654po/serving mirror" marks the current-release copy read
there). Most run over HTTP against tfserving_dev serving
SavedModels built like TF Serving's test models (tests/tfserving_models.py); the
json_tensor_test.cc cases call the same conversions directly, as that unit test does.
A case the development server still answers differently on purpose is marked
xfail(strict=True) with the reason, and listed in docs/tfserving-dev.md. The session ends
with "TF Serving conformance: N of M cases match" (tests/conftest.py).

Sources (tensorflow/serving):
  HANDLER = model_servers/http_rest_api_handler_test.cc
  SERVER  = model_servers/tensorflow_model_server_test.py
  JSON    = util/json_tensor_test.cc
  STATUS  = model_servers/get_model_status_impl.cc
  HTTP    = model_servers/http_server.cc, util/net_http/server/internal/evhttp_request.cc
  UTIL    = model_servers/http_rest_api_util.cc (and http_rest_api_handler.cc)
  CLASSIFIER / REGRESSOR = servables/tensorflow/classifier.cc, regressor.cc
  DOC     = g3doc/api_rest.md
  SERVERCC, CORE, PROTO, FSSOURCE = model_servers/server.cc and main.cc, server_core.cc, config/*.proto,
            sources/storage_path/file_system_storage_path_source.cc (the models.config cases;
            their commits are listed above those cases)
"""

import gzip
import http.client
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests import tfserving_models
from tests.built_once import built_once
from tests.tfserving_models import build_half_plus_two, build_typed
from tfserving_dev import flags as tfserving_flags
from tfserving_dev.cli import _metrics_path
from tfserving_dev.config import aspired_versions, parse_models_config
from tfserving_dev.errors import ServingError
from tfserving_dev.server import LocalModelServer, StartupError
from tfserving_dev.tensors import (
    _Tensor,
    dumps,
    fill_examples,
    fill_predict_request,
    make_json_from_tensors,
    parse_json,
    signature_name,
)

MODEL = "saved_model_half_plus_two_2_versions"  # the name HANDLER's tests serve it under
LABEL = "Version_Label"  # HANDLER: kTestModelVersionLabel -> 123


def _build_models(root: Path) -> None:
    # SERVER test_tf_saved_model_save exports to <base>/00000123 and expects version 123.
    build_half_plus_two(root / "half_plus_two" / "00000123")
    build_typed(root / "typed" / "1")


@pytest.fixture(scope="session")
def model_root(request, tmp_path_factory) -> Path:
    root, _ = built_once(
        request.config, tmp_path_factory, "tfserving-models", _build_models, sources=(_build_models, tfserving_models)
    )
    return root


def _config(root: Path) -> str:
    return (
        f"model_config_list {{\n"
        f'  config {{ name: "{MODEL}" base_path: "{root / "half_plus_two"}" model_platform: "tensorflow"\n'
        f'           version_labels {{ key: "{LABEL}" value: 123 }} }}\n'
        f'  config {{ name: "default" base_path: "{root / "half_plus_two"}" model_platform: "tensorflow" }}\n'
        f'  config {{ name: "typed" base_path: "{root / "typed"}" model_platform: "tensorflow" }}\n}}\n'
    )


@pytest.fixture(scope="module")
def server(model_root, tmp_path_factory):
    path = tmp_path_factory.mktemp("conformance") / "models.config"
    path.write_text(_config(model_root))
    with LocalModelServer(path, poll_seconds=0) as running:
        for name, version in ((MODEL, 123), ("default", 123), ("typed", 1)):
            running.wait_until_available(name, version, timeout=180)
        yield running


@pytest.fixture(scope="module")
def bare_server(tmp_path_factory):
    """No monitoring config and CORS on: what the flags change."""
    path = tmp_path_factory.mktemp("bare") / "models.config"
    path.write_text(
        'model_config_list { config { name: "none" base_path: "/nonexistent" model_platform: "tensorflow" } }'
    )
    with LocalModelServer(path, poll_seconds=0, metrics_path=None, enable_cors_support=True) as running:
        yield running


@dataclass
class Answer:
    status: int
    headers: dict
    body: bytes

    def json(self):
        return json.loads(self.body)

    @property
    def error(self) -> str:
        return self.json()["error"]


def send(server, method: str, path: str, body=None, headers=None, raw: bytes | None = None) -> Answer:
    connection = http.client.HTTPConnection(server.host, server.port, timeout=60)
    try:
        data = (
            raw
            if raw is not None
            else (None if body is None else body.encode() if isinstance(body, str) else json.dumps(body).encode())
        )
        connection.request(method, path, body=data, headers=headers or {})
        response = connection.getresponse()
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        connection.close()


@dataclass
class Case:
    """One request and what TF Serving answers. error: a substring of the "error" text;
    expect: the whole JSON answer (numbers compared as JSON numbers); text: substrings of the
    raw body; empty: the body must be empty."""

    id: str
    method: str
    path: str
    body: object = None
    status: int = 200
    expect: object = None
    error: str | None = None
    text: tuple = ()
    empty: bool = False
    headers: dict = field(default_factory=dict)
    raw: bytes | None = None
    xfail: str | None = None


def _params(cases):
    return [
        pytest.param(c, id=c.id, marks=[pytest.mark.xfail(strict=True, reason=c.xfail)] if c.xfail else [])
        for c in cases
    ]


M = f"/v1/models/{MODEL}"
STATUS_123 = {
    "model_version_status": [
        {"version": "123", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
    ]
}

HTTP_CASES = [
    # HANDLER TEST_F(HttpRestApiHandlerTest, kPathRegex) at http_rest_api_handler_test.cc:169: only /v1/...
    # reaches the REST handler; anything else is libevent's 404 page (HTTP: evhttp_server.cc DispatchEvRequest).
    # tensorflow_serving/model_servers/http_rest_api_handler_test.cc:171;
    #   tensorflow_serving/model_servers/http_server.cc:134
    Case("HANDLER-kPathRegex-statuspage", "GET", "/statuspage", status=404, text=("404 Not Found",)),
    # tensorflow_serving/model_servers/http_rest_api_handler_test.cc:172;
    #   tensorflow_serving/model_servers/http_server.cc:134
    Case("HANDLER-kPathRegex-index", "GET", "/index", status=404, text=("Not Found",)),
    # HANDLER TEST_F(HttpRestApiHandlerTest, UnsupportedApiCalls) at http_rest_api_handler_test.cc:175
    # tensorflow_serving/model_servers/http_rest_api_handler_test.cc:182
    Case("HANDLER-Unsupported-GET-v1-foo", "GET", "/v1/foo", status=400, error="Malformed request: GET /v1/foo"),
    # tensorflow_serving/model_servers/http_rest_api_handler_test.cc:187
    Case("HANDLER-Unsupported-POST-v1-foo", "POST", "/v1/foo", status=400, error="Malformed request"),
    # tensorflow_serving/model_servers/http_rest_api_handler_test.cc:192
    Case("HANDLER-Unsupported-GET-models", "GET", "/v1/models", status=400, error="Missing model name"),
    # tensorflow_serving/model_servers/http_rest_api_handler_test.cc:196
    Case(
        "HANDLER-Unsupported-GET-debug-model_name",
        "GET",
        "/v1/models/debug/model_name",
        status=400,
        error="Malformed request",
    ),
    # tensorflow_serving/model_servers/http_rest_api_handler_test.cc:201
    Case("HANDLER-Unsupported-POST-models", "POST", "/v1/models", status=400, error="Malformed request"),
    # tensorflow_serving/model_servers/http_rest_api_handler_test.cc:206
    Case("HANDLER-Unsupported-GET-predict", "GET", "/v1/models/foo:predict", status=400, error="Malformed request"),
    # tensorflow_serving/model_servers/http_rest_api_handler_test.cc:211
    Case(
        "HANDLER-Unsupported-GET-version-predict",
        "GET",
        "/v1/models/foo/version/50:predict",
        status=400,
        error="Malformed request",
    ),
    # tensorflow_serving/model_servers/http_rest_api_handler_test.cc:216
    Case(
        "HANDLER-Unsupported-POST-version-regress",
        "POST",
        "/v1/models/foo/version/50:regress",
        status=400,
        error="Malformed request",
    ),
    # tensorflow_serving/model_servers/http_rest_api_handler_test.cc:222
    Case(
        "HANDLER-Unsupported-POST-versions-HELLO",
        "POST",
        "/v1/models/foo/versions/HELLO:regress",
        status=400,
        error="Malformed request",
    ),
    # ... "Failed to convert version": ParseModelInfo's error returns before the error JSON is
    # written (http_rest_api_handler.cc TF_RETURN_IF_ERROR(ParseModelInfo(...))): 400, empty body.
    # tensorflow_serving/model_servers/http_rest_api_handler_test.cc:230;
    #   tensorflow_serving/model_servers/http_rest_api_handler.cc:78
    Case(
        "HANDLER-Unsupported-POST-uint64max-version",
        "POST",
        f"/v1/models/foo/versions/{2**64 - 1}:regress",
        status=400,
        empty=True,
    ),
    # tensorflow_serving/model_servers/http_rest_api_util.cc:115;
    #   tensorflow_serving/model_servers/http_rest_api_handler.cc:78
    Case("UTIL-ParseModelInfo-20-digit-version-status", "GET", f"{M}/versions/{'9' * 20}", status=400, empty=True),
    # tensorflow_serving/model_servers/http_rest_api_handler_test.cc:235
    Case("HANDLER-Unsupported-POST-metadata", "POST", "/v1/models/foo/metadata", status=400, error="Malformed request"),
    # tensorflow_serving/model_servers/http_rest_api_handler_test.cc:241
    Case(
        "HANDLER-Unsupported-POST-label-singular",
        "POST",
        "/v1/models/foo/label/some_label:regress",
        status=400,
        error="Malformed request",
    ),
    # tensorflow_serving/model_servers/http_rest_api_handler_test.cc:247
    Case(
        "HANDLER-Unsupported-POST-version-and-label",
        "POST",
        "/v1/models/foo/versions/50/labels/some_label:regress",
        status=400,
        error="Malformed request",
    ),
    # tensorflow_serving/model_servers/http_rest_api_handler_test.cc:253
    Case(
        "HANDLER-Unsupported-POST-versions-label",
        "POST",
        "/v1/models/foo/versions/some_label:regress",
        status=400,
        error="Malformed request",
    ),
    # HANDLER TEST_F(HttpRestApiHandlerTest, PredictModelNameVersionErrors) at http_rest_api_handler_test.cc:256
    # tensorflow_serving/model_servers/http_rest_api_handler_test.cc:264
    Case(
        "HANDLER-PredictNameVersion-unknown-model",
        "POST",
        "/v1/models/foo:predict",
        {"instances": [1]},
        status=404,
        error="Servable not found for request: Latest(foo)",
    ),
    # tensorflow_serving/model_servers/http_rest_api_handler_test.cc:270
    Case(
        "HANDLER-PredictNameVersion-unknown-model-version",
        "POST",
        "/v1/models/foo/versions/50:predict",
        {"instances": [1]},
        status=404,
        error="Servable not found for request: Specific(foo, 50)",
    ),
    # tensorflow_serving/model_servers/http_rest_api_handler_test.cc:276
    Case("HANDLER-PredictNameVersion-name-99", "POST", f"{M}99:predict", {"instances": [1]}, status=404),
    # HANDLER TEST_F(HttpRestApiHandlerTest, PredictRequestErrors) at http_rest_api_handler_test.cc:279
    # tensorflow_serving/model_servers/http_rest_api_handler_test.cc:291
    Case(
        "HANDLER-PredictErrors-empty-document",
        "POST",
        f"{M}:predict",
        "",
        status=400,
        error="JSON Parse error: The document is empty",
    ),
    # tensorflow_serving/model_servers/http_rest_api_handler_test.cc:298
    Case(
        "HANDLER-PredictErrors-bad-json",
        "POST",
        f"{M}:predict",
        "instances = [1, 2]",
        status=400,
        error="JSON Parse error: Invalid value",
    ),
    # tensorflow_serving/model_servers/http_rest_api_handler_test.cc:305
    Case(
        "HANDLER-PredictErrors-incorrect-type",
        "POST",
        f"{M}:predict",
        {"instances": ["x", "y"]},
        status=400,
        error="not of expected type: float",
    ),
    # tensorflow_serving/model_servers/http_rest_api_handler_test.cc:316
    Case(
        "HANDLER-PredictErrors-nonexistent-label",
        "POST",
        f"{M}/labels/Version_Nonexistent:predict",
        {"instances": ["x", "y"]},
        status=400,
        error="Unrecognized servable version label",
    ),
    # tensorflow_serving/model_servers/http_rest_api_handler_test.cc:324
    Case(
        "HANDLER-PredictErrors-signature_name-100",
        "POST",
        f"{M}:predict",
        {"signature_name": 100},
        status=400,
        error="'signature_name' key must be a string value.",
    ),
    # HANDLER TEST_F(HttpRestApiHandlerTest, Predict) at http_rest_api_handler_test.cc:327
    # tensorflow_serving/model_servers/http_rest_api_handler_test.cc:337
    Case(
        "HANDLER-Predict-latest",
        "POST",
        f"{M}:predict",
        {"instances": [[1.0, 2.0], [3.0, 4.0]]},
        expect={"predictions": [[2.5, 3.0], [3.5, 4.0]]},
    ),
    # tensorflow_serving/model_servers/http_rest_api_handler_test.cc:347
    Case(
        "HANDLER-Predict-version",
        "POST",
        f"{M}/versions/123:predict",
        {"instances": [1.0, 2.0]},
        expect={"predictions": [2.5, 3.0]},
    ),
    # tensorflow_serving/model_servers/http_rest_api_handler_test.cc:357
    Case(
        "HANDLER-Predict-label",
        "POST",
        f"{M}/labels/{LABEL}:predict",
        {"instances": [1.0, 2.0]},
        expect={"predictions": [2.5, 3.0]},
    ),
    # tensorflow_serving/model_servers/http_rest_api_handler_test.cc:368
    Case(
        "HANDLER-Predict-signature_name",
        "POST",
        f"{M}/versions/123:predict",
        {"signature_name": "serving_default", "instances": [3.0, 4.0]},
        expect={"predictions": [3.5, 4.0]},
    ),
    # tensorflow_serving/model_servers/http_rest_api_handler_test.cc:379
    Case(
        "HANDLER-Predict-columnar",
        "POST",
        f"{M}/versions/123:predict",
        {"signature_name": "serving_default", "inputs": [3.0, 4.0]},
        expect={"outputs": [3.5, 4.0]},
    ),
    # HANDLER TEST_F(HttpRestApiHandlerTest, Regress) at http_rest_api_handler_test.cc:384
    # tensorflow_serving/model_servers/http_rest_api_handler_test.cc:393
    Case(
        "HANDLER-Regress-latest",
        "POST",
        f"{M}:regress",
        {"signature_name": "regress_x_to_y", "examples": [{"x": 80.0}]},
        expect={"results": [42]},
    ),
    # tensorflow_serving/model_servers/http_rest_api_handler_test.cc:404
    Case(
        "HANDLER-Regress-version",
        "POST",
        f"{M}/versions/123:regress",
        {"signature_name": "regress_x_to_y", "examples": [{"x": 80.0}]},
        expect={"results": [42]},
    ),
    # tensorflow_serving/model_servers/http_rest_api_handler_test.cc:415
    Case(
        "HANDLER-Regress-label",
        "POST",
        f"{M}/labels/{LABEL}:regress",
        {"signature_name": "regress_x_to_y", "examples": [{"x": 80.0}]},
        expect={"results": [42]},
    ),
    # HANDLER TEST_F(HttpRestApiHandlerTest, Classify) at http_rest_api_handler_test.cc:420
    # tensorflow_serving/model_servers/http_rest_api_handler_test.cc:429
    Case(
        "HANDLER-Classify-latest",
        "POST",
        f"{M}:classify",
        {"signature_name": "classify_x_to_y", "examples": [{"x": 20.0}]},
        expect={"results": [[["", 12]]]},
    ),
    # tensorflow_serving/model_servers/http_rest_api_handler_test.cc:440
    Case(
        "HANDLER-Classify-label",
        "POST",
        f"{M}/labels/{LABEL}:classify",
        {"signature_name": "classify_x_to_y", "examples": [{"x": 10.0}]},
        expect={"results": [[["", 7]]]},
    ),
    # HANDLER TEST_F(HttpRestApiHandlerTest, GetStatus) at http_rest_api_handler_test.cc:445
    # tensorflow_serving/model_servers/http_rest_api_handler_test.cc:456
    Case("HANDLER-GetStatus-all", "GET", M, expect=STATUS_123),
    # tensorflow_serving/model_servers/http_rest_api_handler_test.cc:477
    Case("HANDLER-GetStatus-version", "GET", f"{M}/versions/123", expect=STATUS_123),
    # tensorflow_serving/model_servers/http_rest_api_handler_test.cc:498
    Case("HANDLER-GetStatus-label", "GET", f"{M}/labels/{LABEL}", expect=STATUS_123),
    # STATUS GetModelStatusWithModelSpec: a label is not looked at, so an unknown one lists every version too.
    # tensorflow_serving/model_servers/get_model_status_impl.cc:95
    Case("STATUS-label-ignored-unknown-label", "GET", f"{M}/labels/nope", expect=STATUS_123),
    # tensorflow_serving/model_servers/get_model_status_impl.cc:89
    Case(
        "STATUS-unknown-version",
        "GET",
        f"{M}/versions/7",
        status=404,
        error=f"Could not find version 7 of model {MODEL}",
    ),
    # tensorflow_serving/model_servers/get_model_status_impl.cc:100
    Case(
        "STATUS-unknown-model", "GET", "/v1/models/nope", status=404, error="Could not find any versions of model nope"
    ),
    # HANDLER TEST_F(HttpRestApiHandlerTest, GetModelMetadata) at http_rest_api_handler_test.cc:512,
    # SERVER testGetModelMetadataREST
    # tensorflow_serving/model_servers/http_rest_api_handler_test.cc:528
    Case(
        "HANDLER-GetModelMetadata-model_spec",
        "GET",
        f"{M}/metadata",
        text=('"model_spec"', '"signature_def"', '"version": "123"'),
    ),
    # tensorflow_serving/model_servers/http_rest_api_util.cc:30
    Case("UTIL-metadata-by-label", "GET", f"{M}/labels/{LABEL}/metadata", text=('"version": "123"',)),
    # tensorflow_serving/model_servers/http_rest_api_handler_test.cc:316
    Case(
        "UTIL-metadata-unknown-label",
        "GET",
        f"{M}/labels/nope/metadata",
        status=400,
        error="Unrecognized servable version label: nope",
    ),
    # SERVER testClassifyREST, testRegressREST, testPredictREST, testPredictColumnarREST, testGetStatusREST
    # tensorflow_serving/model_servers/tensorflow_model_server_test.py:554
    Case(
        "SERVER-testClassifyREST",
        "POST",
        "/v1/models/default:classify",
        {"signature_name": "classify_x_to_y", "examples": [{"x": 2.0}]},
        expect={"results": [[["", 3.0]]]},
    ),
    # tensorflow_serving/model_servers/tensorflow_model_server_test.py:574
    Case(
        "SERVER-testRegressREST",
        "POST",
        "/v1/models/default:regress",
        {"signature_name": "regress_x_to_y", "examples": [{"x": 2.0}]},
        expect={"results": [3.0]},
    ),
    # tensorflow_serving/model_servers/tensorflow_model_server_test.py:594
    Case(
        "SERVER-testPredictREST",
        "POST",
        "/v1/models/default:predict",
        {"instances": [2.0, 3.0, 4.0]},
        expect={"predictions": [3.0, 3.5, 4.0]},
    ),
    # tensorflow_serving/model_servers/tensorflow_model_server_test.py:614
    Case(
        "SERVER-testPredictColumnarREST",
        "POST",
        "/v1/models/default:predict",
        {"inputs": [2.0, 3.0, 4.0]},
        expect={"outputs": [3.0, 3.5, 4.0]},
    ),
    # tensorflow_serving/model_servers/tensorflow_model_server_test.py:633
    Case("SERVER-testGetStatusREST", "GET", "/v1/models/default", expect=STATUS_123),
    # UTIL kPredictionApiGegex is (?i): the path is case-insensitive, but the verb is then
    # compared exactly (http_rest_api_handler.cc: *method == "predict"), so :PREDICT is malformed.
    # tensorflow_serving/model_servers/http_rest_api_util.cc:28
    Case(
        "UTIL-path-case-insensitive",
        "POST",
        f"/V1/MODELS/{MODEL}:predict",
        {"instances": [2.0]},
        expect={"predictions": [3.0]},
    ),
    # tensorflow_serving/model_servers/http_rest_api_handler.cc:72;
    #   tensorflow_serving/model_servers/http_rest_api_handler.cc:91
    Case(
        "HANDLER-verb-case-sensitive",
        "POST",
        f"{M}:PREDICT",
        {"instances": [2.0]},
        status=400,
        error=f"Malformed request: POST {M}:PREDICT",
    ),
    # tensorflow_serving/model_servers/http_rest_api_handler.cc:72;
    #   tensorflow_serving/model_servers/http_rest_api_handler.cc:84
    Case(
        "HANDLER-verb-case-sensitive-Classify",
        "POST",
        f"{M}:Classify",
        {"examples": [{"x": 2.0}]},
        status=400,
        error="Malformed request",
    ),
    # tensorflow_serving/model_servers/http_rest_api_util.cc:106
    Case(
        "UTIL-model-name-percent-decoded",
        "POST",
        "/v1/models/%64efault:predict",
        {"instances": [2.0]},
        expect={"predictions": [3.0]},
    ),
    # HANDLER ProcessRequest: any other method is malformed; HEAD answers without a body (libevent).
    # tensorflow_serving/model_servers/http_rest_api_handler.cc:72
    Case("HANDLER-DELETE-malformed", "DELETE", M, status=400, error=f"Malformed request: DELETE {M}"),
    # tensorflow_serving/model_servers/http_rest_api_handler.cc:72
    Case(
        "HANDLER-PUT-malformed", "PUT", f"{M}:predict", {"instances": [1.0]}, status=400, error="Malformed request: PUT"
    ),
    # tensorflow_serving/model_servers/http_rest_api_handler.cc:72;
    #   tensorflow_serving/util/net_http/server/internal/evhttp_request.cc:65
    Case("HTTP-HEAD-malformed-no-body", "HEAD", M, status=400, empty=True),
    # HTTP RestApiRequestDispatcher::ProcessRequest: OPTIONS is a CORS preflight, OK only with an Origin.
    # tensorflow_serving/model_servers/http_server.cc:167 (kh3654po/serving mirror)
    Case("HTTP-OPTIONS-with-origin", "OPTIONS", M, status=200, empty=True, headers={"Origin": "https://example.com"}),
    # tensorflow_serving/model_servers/http_server.cc:171 (kh3654po/serving mirror)
    Case("HTTP-OPTIONS-without-origin", "OPTIONS", M, status=400, empty=True),
    # json_tensor.cc FillTensorMapFromInputsMap looks up the signature's inputs only: extra keys are ignored.
    # tensorflow_serving/util/json_tensor.cc:619
    Case(
        "JSON-columnar-extra-key-ignored",
        "POST",
        "/v1/models/default:predict",
        {"inputs": {"x": [2.0], "colour": "red"}},
        expect={"outputs": [3.0]},
    ),
    # tensorflow_serving/util/json_tensor.cc:621
    Case(
        "JSON-columnar-missing-named-input",
        "POST",
        "/v1/models/default:predict",
        {"inputs": {"colour": [2.0]}},
        status=400,
        error="Missing named input: x in 'inputs' object.",
    ),
    # json_tensor.cc AddValueToTensor: strict types, nothing converted silently.
    # tensorflow_serving/util/json_tensor.cc:265
    Case(
        "JSON-float-from-numeric-string",
        "POST",
        "/v1/models/default:predict",
        {"instances": ["1.5"]},
        status=400,
        error='JSON Value: "1.5" Type: String is not of expected type: float',
    ),
    # tensorflow_serving/util/json_tensor.cc:265
    Case(
        "JSON-float-from-boolean",
        "POST",
        "/v1/models/default:predict",
        {"instances": [True]},
        status=400,
        error="Type: True is not of expected type: float",
    ),
    # tensorflow_serving/util/json_tensor.cc:265
    Case(
        "JSON-float-from-null",
        "POST",
        "/v1/models/default:predict",
        {"instances": [None]},
        status=400,
        error="Type: Null is not of expected type: float",
    ),
    # tensorflow_serving/util/json_tensor.cc:284
    Case(
        "JSON-int-from-decimal",
        "POST",
        "/v1/models/typed:predict",
        {"signature_name": "echo", "inputs": {"f": 1.0, "d": 1.0, "i": 1.5, "l": 1, "s": "a", "b": True}},
        status=400,
        error="JSON Value: 1.5 Type: Number is not of expected type: int32",
    ),
    # tensorflow_serving/util/json_tensor.cc:294
    Case(
        "JSON-int64-from-string",
        "POST",
        "/v1/models/typed:predict",
        {"signature_name": "echo", "inputs": {"f": 1.0, "d": 1.0, "i": 1, "l": "1", "s": "a", "b": True}},
        status=400,
        error="is not of expected type: int64",
    ),
    # tensorflow_serving/util/json_tensor.cc:299
    Case(
        "JSON-bool-from-number",
        "POST",
        "/v1/models/typed:predict",
        {"signature_name": "echo", "inputs": {"f": 1.0, "d": 1.0, "i": 1, "l": 1, "s": "a", "b": 1}},
        status=400,
        error="JSON Value: 1 Type: Number is not of expected type: bool",
    ),
    # tensorflow_serving/util/json_tensor.cc:289
    Case(
        "JSON-string-from-number",
        "POST",
        "/v1/models/typed:predict",
        {"signature_name": "text", "instances": [1]},
        status=400,
        error="is not of expected type: string",
    ),
    # tensorflow_serving/util/json_tensor.cc:497
    Case(
        "JSON-signature_name-null",
        "POST",
        "/v1/models/default:predict",
        '{"signature_name": null, "instances": [1.0]}',
        status=400,
        error="'signature_name' key must be a string value.",
    ),
    # tensorflow_serving/model_servers/http_rest_api_handler.cc:239
    Case(
        "JSON-signature_name-unknown",
        "POST",
        "/v1/models/default:predict",
        {"signature_name": "nope", "instances": [1.0]},
        status=400,
        error='Serving signature name: "nope" not found in signature def',
    ),
    # tensorflow_serving/util/json_tensor.cc:485
    Case("JSON-top-level-not-object", "POST", "/v1/models/default:predict", [1, 2], status=400, error="Is not object"),
    # tensorflow_serving/util/json_tensor.cc:665
    Case(
        "JSON-both-keys",
        "POST",
        "/v1/models/default:predict",
        {"instances": [1.0], "inputs": [1.0]},
        status=400,
        error="Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist",
    ),
    # tensorflow_serving/util/json_tensor.cc:670
    Case(
        "JSON-instances-not-list",
        "POST",
        "/v1/models/default:predict",
        {"instances": 1.0},
        status=400,
        error="Excepting 'instances' to be an list/array",
    ),
    # tensorflow_serving/util/json_tensor.cc:674
    Case(
        "JSON-instances-empty",
        "POST",
        "/v1/models/default:predict",
        {"instances": []},
        status=400,
        error="No values in 'instances' array",
    ),
    # tensorflow_serving/util/json_tensor.cc:690
    Case(
        "JSON-neither-key",
        "POST",
        "/v1/models/default:predict",
        {"rows": [1.0]},
        status=400,
        error="Missing 'inputs' or 'instances' key",
    ),
    # json_tensor.cc JsonDecodeBase64Object: "Unable to base64 decode" is an INVALID_ARGUMENT (400).
    # tensorflow_serving/util/json_tensor.cc:372
    Case(
        "JSON-invalid-base64",
        "POST",
        "/v1/models/typed:predict",
        {"signature_name": "text", "instances": [{"b64": "not base64!"}]},
        status=400,
        error="Unable to base64 decode",
    ),
    # tensorflow_serving/util/json_tensor.cc:550; tensorflow_serving/util/json_tensor.cc:435
    Case(
        "JSON-base64-not-string",
        "POST",
        "/v1/models/typed:predict",
        {"signature_name": "text", "instances": [{"b64": 5}]},
        status=400,
        error="Failed to process element: 0 key: b64 of 'instances' list. Error: INVALID_ARGUMENT: "
        "JSON object: does not have named input: b64",
    ),
    # DOC "Encoding binary values": {"b64": ...} in, and outputs named *_bytes come back base64-encoded.
    # tensorflow_serving/g3doc/api_rest.md:348; tensorflow_serving/g3doc/api_rest.md:311
    Case(
        "DOC-binary-values-round-trip",
        "POST",
        "/v1/models/typed:predict",
        {"signature_name": "text", "instances": [{"b64": "aGVsbG8="}, "world"]},
        expect={
            "predictions": [
                {"text": "hello", "text_bytes": {"b64": "aGVsbG8="}},
                {"text": "world", "text_bytes": {"b64": "d29ybGQ="}},
            ]
        },
    ),
    # DOC "JSON conformity": NaN and Infinity are accepted and written back as NaN/Infinity.
    # tensorflow_serving/g3doc/api_rest.md:380
    Case(
        "DOC-nan-infinity",
        "POST",
        "/v1/models/default:predict",
        '{"instances": [NaN, Infinity, -Infinity]}',
        text=("NaN", "Infinity", "-Infinity"),
    ),
    # json_tensor.cc WriteDecimal: six digits if they round-trip, else %.9g; whole numbers get ".0".
    # tensorflow_serving/util/json_tensor.cc:137
    Case(
        "JSON-WriteDecimal-one-third", "POST", "/v1/models/typed:predict", {"instances": [1.0]}, text=("0.333333343",)
    ),
    # tensorflow_serving/util/json_tensor.cc:151
    Case("JSON-WriteDecimal-whole-number", "POST", "/v1/models/typed:predict", {"instances": [9.0]}, text=("[3.0]",)),
    # tensorflow_serving/util/json_tensor.cc:129
    Case("JSON-WriteDecimal-scientific", "POST", "/v1/models/typed:predict", {"instances": [3e7]}, text=("[1e+07]",)),
    # HTTP (net_http evhttp_request.cc): gzip bodies are uncompressed, chunked bodies read whole.
    # tensorflow_serving/util/net_http/server/internal/evhttp_request.cc:180
    Case(
        "HTTP-gzip-body",
        "POST",
        "/v1/models/default:predict",
        raw=gzip.compress(b'{"instances": [2.0]}'),
        headers={"Content-Encoding": "gzip"},
        expect={"predictions": [3.0]},
    ),
    # tensorflow_serving/util/net_http/server/internal/evhttp_request.cc:253;
    #   tensorflow_serving/util/json_tensor.cc:461
    Case(
        "HTTP-gzip-broken-body-is-empty",
        "POST",
        "/v1/models/default:predict",
        raw=b"not gzip",
        headers={"Content-Encoding": "gzip"},
        status=400,
        error="The document is empty",
    ),
    # ParseJson has no depth limit to trip over here; a deeply nested document must still be a 400.
    # tensorflow_serving/util/json_tensor.cc:469
    Case(
        "JSON-very-deep-document",
        "POST",
        "/v1/models/default:predict",
        '{"instances": ' + "[" * 100000 + "]" * 100000 + "}",
        status=400,
        error="JSON Parse error",
    ),
    # classifier.cc / regressor.cc signature checks.
    # tensorflow_serving/servables/tensorflow/classifier.cc:294
    Case(
        "CLASSIFIER-no-such-signature",
        "POST",
        "/v1/models/default:classify",
        {"signature_name": "nope", "examples": [{"x": 2.0}]},
        status=400,
        error="No signature was found with the name: nope",
    ),
    # tensorflow_serving/servables/tensorflow/classifier.cc:298
    Case(
        "CLASSIFIER-predict-signature",
        "POST",
        "/v1/models/default:classify",
        {"examples": [{"x": 2.0}]},
        status=400,
        error="Expected classification signature method_name to be tensorflow/serving/classify. "
        "Was: tensorflow/serving/predict",
    ),
    # tensorflow_serving/servables/tensorflow/regressor.cc:229
    Case(
        "REGRESSOR-classify-signature",
        "POST",
        "/v1/models/default:regress",
        {"signature_name": "classify_x_to_y", "examples": [{"x": 2.0}]},
        status=400,
        error="Expected regression signature method_name to be tensorflow/serving/regress",
    ),
    # tensorflow_serving/util/json_tensor.cc:817
    Case(
        "REGRESSOR-context-and-examples",
        "POST",
        "/v1/models/default:regress",
        {"signature_name": "regress_x2_to_y3", "context": {"x2": 4.0}, "examples": [{"x": 1.0}, {"x": 2.0}]},
        expect={"results": [5.0, 5.0]},
    ),
    # rapidjson names the syntax error (GetParseError_En); Python's parser does not tell them apart.
    # tensorflow_serving/util/json_tensor.cc:474; tensorflow_serving/model_servers/http_rest_api_handler_test.cc:298
    Case(
        "HANDLER-PredictErrors-missing-comma",
        "POST",
        f"{M}:predict",
        '{"instances": [1, 2}',
        status=400,
        error="JSON Parse error: Missing a comma or ']' after an array element.",
        xfail="the development server reports every JSON syntax error as 'Invalid value.' (Python's json)",
    ),
    # tensorflow_serving/util/json_tensor.cc:828
    Case(
        "JSON-classify-missing-examples",
        "POST",
        "/v1/models/default:classify",
        {"signature_name": "classify_x_to_y"},
        status=400,
        error="When method is classify, key 'examples' is expected and was not found",
    ),
]


@pytest.mark.parametrize("case", _params(HTTP_CASES))
def test_http(server, case: Case):
    answer = send(server, case.method, case.path, case.body, case.headers, case.raw)
    assert answer.status == case.status, answer.body[:500]
    if case.expect is not None:
        assert answer.json() == case.expect
    if case.error is not None:
        assert case.error in answer.error
    for text in case.text:
        assert text in answer.body.decode(), answer.body[:500]
    if case.empty:
        assert answer.body == b""
    if 200 <= case.status < 600 and case.path.lower().startswith("/v1/") and case.method not in ("HEAD", "OPTIONS"):
        # HANDLER: every /v1 answer, error or not, is JSON with that content type.
        assert answer.headers.get("content-type") == "application/json"


# --- what the flags change ------------------------------------------------------------------


def test_cors_headers_with_enable_cors_support(bare_server):
    """HTTP: core_->enable_cors_support() adds AddCORSHeaders() (UTIL) to every /v1 answer.
    tensorflow_serving/model_servers/http_server.cc:179 (kh3654po/serving mirror);
    tensorflow_serving/model_servers/http_rest_api_util.cc:37."""
    answer = send(bare_server, "OPTIONS", "/v1/models/none", headers={"Origin": "http://localhost:3000"})
    assert answer.status == 200
    assert answer.headers["access-control-allow-origin"] == "*"
    assert answer.headers["access-control-allow-methods"] == "POST, GET"
    assert answer.headers["access-control-allow-headers"] == "Content-Type"


def test_no_metrics_endpoint_without_monitoring_config(bare_server):
    """HTTP CreateAndStartHttpServer registers the Prometheus handler only when the
    monitoring config enables it; tensorflow_model_server has none by default.
    tensorflow_serving/model_servers/http_server.cc:193."""
    assert _metrics_path(tfserving_flags.parse(["--model_config_file=/x/models.config"])) is None
    answer = send(bare_server, "GET", "/monitoring/prometheus/metrics")
    assert answer.status == 404 and b"Not Found" in answer.body


def test_version_directory_zero_padded_loads_as_its_number(server):
    """SERVER test_tf_saved_model_save: <base>/00000123 serves as version 123."""
    answer = send(server, "POST", "/v1/models/default/versions/123:predict", {"instances": [2.0]})
    assert answer.status == 200 and answer.json() == {"predictions": [3.0]}


def test_chunked_request_body(server):
    """HTTP: net_http reads the whole body whatever its transfer encoding (evhttp_request.cc).
    tensorflow_serving/model_servers/http_server.cc:148."""
    connection = http.client.HTTPConnection(server.host, server.port, timeout=60)
    try:
        connection.request(
            "POST",
            "/v1/models/default:predict",
            body=iter([b'{"instances"', b": [2.0]}"]),
            encode_chunked=True,
            headers={"Transfer-Encoding": "chunked"},
        )
        response = connection.getresponse()
        assert response.status == 200 and json.loads(response.read()) == {"predictions": [3.0]}
    finally:
        connection.close()


# --- models.config: read and checked as the real server reads and checks it -----------------
#
# Each case gives path:line in these files, as stored in the search index at these commits:
#   SERVERCC = tensorflow_serving/model_servers/server.cc, and main.cc,
#              tensorflow/serving @ d16ceafa044932e2d9ef84bbe1a6ae5c6356252f
#   CORE     = tensorflow_serving/model_servers/server_core.cc,
#              tensorflow/serving @ b6b8cca6540bac5bb66de34ce7a0bb3c825ca3c0
#   PROTO    = tensorflow_serving/config/model_server_config.proto @ 853d94201fa2a4cd4526ea2e8634ea36822d853e,
#              tensorflow_serving/config/file_system_storage_path_source.proto @ 4786b76785e0d91d20a720ceafda8808a8494eb4,
#              tensorflow_serving/config/monitoring_config.proto @ 021efbd3281aa815cab0b35eab6d6d25249c12d4
#   FSSOURCE = tensorflow_serving/sources/storage_path/file_system_storage_path_source.cc,
#              tensorflow/serving @ 21360c763767823b82768ce42c5c90c0c9012601
#   TFPATH   = tensorflow/core/platform/path.cc, tensorflow/tensorflow @ 711d5addcda017d0bbea5b39f86106486b0f037c;
#              tensorflow/core/platform/scanner.h @ ac960b0c6063fd1b847948ed0d0b1aa411cfe8ee
#   PROTOBUF = src/google/protobuf/text_format.cc, protocolbuffers/protobuf @ 5d03f8c8a597d87ccdf59923eca44da985fd3c6c
# A status is written as the current release prints it, "INVALID_ARGUMENT: <message>" (absl::Status;
# the TensorFlow of d16ceafa printed "Invalid argument: <message>").

_OK_MODEL = 'name: "m" base_path: "/nonexistent/m" model_platform: "tensorflow"'


@pytest.mark.parametrize(
    "text, status",
    [
        # SERVERCC server.cc:66-70: whatever TextFormat::ParseFromString refuses is
        # InvalidArgument("Invalid protobuf file: '<file>'").
        # A field ModelConfig does not have (PROTO model_server_config.proto:19-68).
        ("model_config_list { config { colour: 1 } }", "INVALID_ARGUMENT: Invalid protobuf file: '{path}'"),
        # An unquoted string and an unclosed block (model_server_config.proto:21, 71-73).
        ("model_config_list { config { name: m }", "INVALID_ARGUMENT: Invalid protobuf file: '{path}'"),
        # A version that is not an int64 (model_server_config.proto:48;
        # file_system_storage_path_source.proto:28).
        (
            "model_config_list { config { name: 'm' model_version_policy { specific { versions: 'x' } } } }",
            "INVALID_ARGUMENT: Invalid protobuf file: '{path}'",
        ),
        # CORE server_core.cc:452-454 ReloadConfig runs ValidateModelConfigList: unique names
        # first (server_core.cc:85-90), then absolute base paths (server_core.cc:106-111).
        (
            f"model_config_list {{ config {{ {_OK_MODEL} }} config {{ {_OK_MODEL} }} }}",
            "INVALID_ARGUMENT: Illegal to list model m multiple times in config list",
        ),
        # server_core.cc:73-76 UriIsRelativePath: no scheme and not absolute.
        (
            'model_config_list { config { name: "m" base_path: "models/m" model_platform: "tensorflow" } }',
            "INVALID_ARGUMENT: Expected model m to have an absolute path or URI; got base_path()=models/m",
        ),
        # An empty path is not absolute (TFPATH path.cc:133-134).
        (
            'model_config_list { config { name: "m" model_platform: "tensorflow" } }',
            "INVALID_ARGUMENT: Expected model m to have an absolute path or URI; got base_path()=",
        ),
        # A scheme is One(LETTER).Many(LETTER_DIGIT_DOT) before "://" (TFPATH path.cc:236-240),
        # and Many is one or more (scanner.h:105): "s://m" has no scheme, so it is relative.
        (
            'model_config_list { config { name: "m" base_path: "s://m" model_platform: "tensorflow" } }',
            "INVALID_ARGUMENT: Expected model m to have an absolute path or URI; got base_path()=s://m",
        ),
        # CORE server_core.cc:330 -> CreateStoragePathRoutes (server_core.cc:604-614), which
        # calls GetPlatform (server_core.cc:610): neither model_platform nor model_type
        # (server_core.cc:64-67) ...
        (
            'model_config_list { config { name: "m" base_path: "/nonexistent/m" } }',
            "INVALID_ARGUMENT: Illegal setting neither ModelServerConfig::model_type (deprecated) "
            "nor ModelServerConfig::model_platform.",
        ),
        # ... a platform the PlatformConfigMap has no port for (server_core.cc:611-614); the
        # map BuildAndStart builds has TensorFlow's only (SERVERCC server.cc:271-272) ...
        (
            'model_config_list { config { name: "m" base_path: "/nonexistent/m" model_platform: "onnx" } }',
            "INVALID_ARGUMENT: Model m requests unsupported platform onnx",
        ),
        # ... or both (server_core.cc:48-51).
        (
            'model_config_list { config { name: "m" base_path: "/m" model_type: TENSORFLOW model_platform: "tensorflow" } }',
            "INVALID_ARGUMENT: Illegal setting both ModelServerConfig::model_type (deprecated) "
            "and ModelServerConfig::model_platform.",
        ),
    ],
)
def test_a_config_the_real_server_refuses_fails_the_start_with_its_status(tmp_path, text, status):
    """SERVERCC BuildAndStart returns ParseProtoTextFile's status (server.cc:203-204), then
    ServerCore::Create's (server.cc:290), which is ReloadConfig's (CORE server_core.cc:247);
    main.cc:215-217 prints it after "Failed to start server. Error: "."""
    path = tmp_path / "models.config"
    path.write_text(text)
    server = LocalModelServer(path, poll_seconds=0)
    try:
        with pytest.raises(StartupError) as refused:
            server.start()
    finally:
        server.stop()
    assert str(refused.value) == status.format(path=path)


def test_a_base_path_with_a_scheme_is_a_uri():
    """CORE server_core.cc:73-76 UriIsRelativePath: a scheme of two characters or more before
    "://" makes a URI (TFPATH path.cc:236-240), whatever follows; only "s://m" above is not."""
    (config,) = parse_models_config(
        'model_config_list { config { name: "m" base_path: "gs://bucket/m" model_platform: "tensorflow" } }'
    )
    assert config.base_path == "gs://bucket/m"


def test_the_deprecated_model_type_still_names_the_tensorflow_platform(tmp_path, caplog):
    """CORE GetPlatform: model_type TENSORFLOW (PROTO model_server_config.proto:14, 34),
    without model_platform, is the "tensorflow" platform (server_core.cc:53-54), with the
    deprecation warning (server_core.cc:46-47)."""
    path = tmp_path / "models.config"
    path.write_text('model_config_list { config { name: "m" base_path: "/nonexistent/m" model_type: TENSORFLOW } }')
    with caplog.at_level("WARNING", logger="tfserving_dev"), LocalModelServer(path, poll_seconds=0):
        pass
    assert "Deprecated ModelServerConfig::model_type field used. Prefer ModelServerConfig::model_platform." in [
        r.getMessage() for r in caplog.records
    ]


def test_an_empty_config_serves_nothing(tmp_path, caplog):
    """CORE ReloadConfig: a file that sets no config is accepted while none has been
    (server_core.cc:435-440) and logs "Taking no action for empty config." (server_core.cc:446-450);
    the server still starts."""
    path = tmp_path / "models.config"
    path.write_text("")
    with caplog.at_level("INFO", logger="tfserving_dev"), LocalModelServer(path, poll_seconds=0) as running:
        assert send(running, "GET", "/v1/models/m").status == 404
    assert "Taking no action for empty config." in [r.getMessage() for r in caplog.records]


def test_a_latest_policy_of_zero_versions_serves_the_latest_one():
    """FSSOURCE file_system_storage_path_source.cc:154-155 AspireLatestVersions:
    std::max(num_versions, 1U) (PROTO file_system_storage_path_source.proto:14-15)."""
    (config,) = parse_models_config(
        'model_config_list { config { name: "m" base_path: "/m" model_platform: "tensorflow" '
        "model_version_policy { latest { num_versions: 0 } } } }"
    )
    assert aspired_versions(config, [1, 2, 3]) == {3}


def test_a_refused_config_on_a_reload_is_logged_and_the_old_one_keeps_serving(tmp_path, caplog):
    """SERVERCC PollFilesystemAndReloadConfig (server.cc:163-177): "Failed to read
    ModelServerConfig file: " for a file that does not parse (server.cc:168-169),
    "PollFilesystemAndReloadConfig failed to ReloadConfig: " for one ReloadConfig refuses
    (server.cc:175-176), each with the status's error_message() alone, and nothing changes.
    An empty file is refused once a model_config_list is served (CORE server_core.cc:437-444)."""
    path = tmp_path / "models.config"
    path.write_text(f"model_config_list {{ config {{ {_OK_MODEL} }} }}")
    with LocalModelServer(path, poll_seconds=0, config_poll_seconds=0.1) as running:
        before = running.manager.configs()
        with caplog.at_level("ERROR", logger="tfserving_dev"):
            path.write_text("model_config_list { config { name: ")
            _wait_for_log(caplog, "Failed to read ModelServerConfig file: ")
            path.write_text(f"model_config_list {{ config {{ {_OK_MODEL} }} config {{ {_OK_MODEL} }} }}")
            _wait_for_log(caplog, "PollFilesystemAndReloadConfig failed to ReloadConfig: Illegal")
            path.write_text("")
            _wait_for_log(caplog, "PollFilesystemAndReloadConfig failed to ReloadConfig: Cannot")
        assert running.manager.configs() == before
    messages = [r.getMessage() for r in caplog.records]
    assert f"Failed to read ModelServerConfig file: Invalid protobuf file: '{path}'" in messages
    assert (
        "PollFilesystemAndReloadConfig failed to ReloadConfig: Illegal to list model m multiple times in config list"
        in messages
    )
    assert (
        "PollFilesystemAndReloadConfig failed to ReloadConfig: Cannot transition to requested config. "
        "It is only legal to transition from one ModelConfigList to another." in messages
    )
    # protobuf's own parser says where it stopped, as its C++ parser logs it
    # (PROTOBUF text_format.cc:319-325: "Error parsing text-format <type>: <line>:<column>: ").
    assert any(m.startswith("Error parsing text-format tensorflow.serving.ModelServerConfig: 1:") for m in messages)


def _wait_for_log(caplog, prefix: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not any(r.getMessage().startswith(prefix) for r in caplog.records):
        assert time.monotonic() < deadline, f"no log line starting {prefix!r}"
        time.sleep(0.05)


def test_a_monitoring_config_is_read_as_monitoring_config(tmp_path):
    """SERVERCC BuildAndStart reads --monitoring_config_file with
    ParseProtoTextFile<MonitoringConfig> (server.cc:363-366), whose refusal is the same
    "Invalid protobuf file" status (server.cc:66-70). PrometheusConfig.path defaults to
    PrometheusExporter::kPrometheusPath (PROTO monitoring_config.proto:11-13), which is
    "/monitoring/prometheus/metrics" (util/prometheus_exporter.cc:153-154, tensorflow/serving
    @ 021efbd3281aa815cab0b35eab6d6d25249c12d4)."""
    monitoring = tmp_path / "monitoring.config"
    monitoring.write_text("prometheus_config { enable: true }")
    args = tfserving_flags.parse(["--model_config_file=/x/models.config", f"--monitoring_config_file={monitoring}"])
    assert _metrics_path(args) == "/monitoring/prometheus/metrics"
    monitoring.write_text("prometheus_config { enable: true path: 'x' }\nstray")
    with pytest.raises(ServingError, match=f"Invalid protobuf file: '{monitoring}'"):
        _metrics_path(args)


# --- metrics ----------------------------------------------------------------------------------


def _families(server) -> dict:
    answer = send(server, "GET", "/monitoring/prometheus/metrics")
    assert answer.status == 200 and answer.headers["content-type"] == "text/plain"
    text = answer.body.decode()
    assert "# TYPE" in text  # SERVER testPrometheusEndpoint
    return {f.name: f for f in text_string_to_metric_families(text)}, text


def _count(families, model, status) -> float:
    return sum(
        s.value
        for s in families[":tensorflow:serving:request_count"].samples
        if s.labels == {"model_name": model, "status": status}
    )


def _latency_count(families, model, api) -> float:
    return sum(
        s.value
        for s in families[":tensorflow:serving:request_latency"].samples
        if s.name.endswith("_count") and s.labels.get("model_name") == model and s.labels.get("API") == api
    )


def test_request_count_counts_every_v1_request_including_status_and_metadata(server):
    """HTTP ProcessRequest: RecordModelRequestCount(model_name, status) for every request.
    tensorflow_serving/model_servers/http_server.cc:197 (kh3654po/serving mirror)."""
    before, _ = _families(server)
    send(server, "GET", "/v1/models/typed")
    send(server, "GET", "/v1/models/typed/metadata")
    send(server, "GET", "/v1/models/typed/versions/9")
    after, _ = _families(server)
    assert _count(after, "typed", "OK") - _count(before, "typed", "OK") == 2
    assert _count(after, "typed", "NOT_FOUND") - _count(before, "typed", "NOT_FOUND") == 1


def test_request_latency_counts_successes_only(server):
    """HTTP ProcessRequest: RecordRequestLatency(model_name, method, "REST") only when OK.
    tensorflow_serving/model_servers/http_server.cc:190 (kh3654po/serving mirror)."""
    before, _ = _families(server)
    send(server, "POST", "/v1/models/typed:predict", {"instances": [3.0]})
    send(server, "POST", "/v1/models/typed:predict", {"instances": ["three"]})
    after, _ = _families(server)
    assert _latency_count(after, "typed", "predict") - _latency_count(before, "typed", "predict") == 1


def test_runtime_latency_and_load_attempts_are_exported(server, model_root):
    """predict_util.cc RecordRuntimeLatency(name, "Predict", "TF1"); tensorflow/cc/saved_model/
    loader.cc load_attempt_count{model_path, status}."""
    send(server, "POST", "/v1/models/typed:predict", {"instances": [3.0]})
    families, text = _families(server)
    runtime = [s for s in families[":tensorflow:serving:runtime_latency"].samples if s.name.endswith("_count")]
    assert any(
        s.labels == {"model_name": "typed", "API": "Predict", "runtime": "TF1"} and s.value >= 1 for s in runtime
    )
    path = str(model_root / "typed" / "1")
    assert f':tensorflow:cc:saved_model:load_attempt_count{{model_path="{path}",status="success"}} 1' in text


@pytest.mark.xfail(
    strict=True,
    reason="the development server exports request_count, request_latency, "
    "runtime_latency and load_attempt_count only, not TF's load_latency",
)
def test_saved_model_load_latency_is_exported(server):
    """tensorflow/cc/saved_model/loader.cc also exports /tensorflow/cc/saved_model/load_latency."""
    _, text = _families(server)
    assert ":tensorflow:cc:saved_model:load_latency{" in text


def test_metrics_path_with_a_query_is_refused(server):
    """HTTP ProcessPrometheusRequest compares the path with its query: "Unexpected path".
    tensorflow_serving/model_servers/http_server.cc:93."""
    answer = send(server, "GET", "/monitoring/prometheus/metrics?x=1")
    assert answer.status == 400
    assert answer.body.decode() == (
        "Unexpected path: /monitoring/prometheus/metrics?x=1. Should be /monitoring/prometheus/metrics"
    )


# --- json_tensor_test.cc, called as that unit test calls json_tensor.cc ------------------------


def fill(text: str, infomap: dict):
    doc = parse_json(text.encode())
    signature_name(doc)  # FillSignature() runs first
    return fill_predict_request(doc, infomap)


def t(dtype, shape, values):
    return _Tensor(dtype, shape, values)


FILL_CASES = [
    # tensorflow_serving/util/json_tensor_test.cc:69
    (
        "JSON-SingleUnnamedTensor",
        '{"instances": [[1,2],[3,4],[5,6]]}',
        {"default": "int32"},
        "row",
        {"default": t("int32", [3, 2], [1, 2, 3, 4, 5, 6])},
    ),
    # tensorflow_serving/util/json_tensor_test.cc:99
    (
        "JSON-MixedInputForFloatTensor",
        '{"instances": [1, 2.0, 3, 4, 5.003, 0.007, 0.0]}',
        {"default": "float"},
        "row",
        {"default": t("float", [7], [1, 2, 3, 4, 5.003, 0.007, 0])},
    ),
    # tensorflow_serving/util/json_tensor_test.cc:127
    (
        "JSON-MixedInputForDoubleTensor",
        '{"instances": [1.0, 2, 3, 4, 0.662, 0, 0.0]}',
        {"default": "double"},
        "row",
        {"default": t("double", [7], [1, 2, 3, 4, 0.662, 0, 0])},
    ),
    # tensorflow_serving/util/json_tensor_test.cc:157
    (
        "JSON-SingleUnnamedTensorWithSignature",
        '{"signature_name": "predict_images", "instances": [[1,2]]}',
        {"default": "int32"},
        "row",
        {"default": t("int32", [1, 2], [1, 2])},
    ),
    # tensorflow_serving/util/json_tensor_test.cc:214
    (
        "JSON-SingleUnnamedTensorBase64Scalars",
        '{"instances": [{"b64": "aGVsbG8="}, {"b64": "d29ybGQ="}]}',
        {"default": "string"},
        "row",
        {"default": t("string", [2], [b"hello", b"world"])},
    ),
    # tensorflow_serving/util/json_tensor_test.cc:239
    (
        "JSON-SingleUnnamedTensorBase64Lists",
        '{"instances": [[{"b64": "aGVsbG8="}], [{"b64": "d29ybGQ="}]]}',
        {"default": "string"},
        "row",
        {"default": t("string", [2, 1], [b"hello", b"world"])},
    ),
    # tensorflow_serving/util/json_tensor_test.cc:269
    (
        "JSON-SingleNamedTensorBase64",
        '{"instances": [{"default": [[{"b64": "aGVsbG8="}], [{"b64": "d29ybGQ="}]]}]}',
        {"default": "string"},
        "row",
        {"default": t("string", [1, 2, 1], [b"hello", b"world"])},
    ),
    # tensorflow_serving/util/json_tensor_test.cc:318
    (
        "JSON-MultipleNamedTensor",
        (
            '{"instances": [{"int_tensor": [[1,2],[3,4],[5,6]], "str_tensor": ["foo", "bar"], "float_tensor": [1.0, NaN],'
            ' "dbl_tensor": [NaN]}, {"int_tensor": [[7,8],[9,0],[1,2]], "str_tensor": ["baz", "bat"],'
            ' "float_tensor": [2.0, Infinity], "dbl_tensor": [2.0]}]}'
        ),
        {"int_tensor": "int32", "str_tensor": "string", "float_tensor": "float", "dbl_tensor": "double"},
        "row",
        {
            "int_tensor": t("int32", [2, 3, 2], [1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2]),
            "str_tensor": t("string", [2, 2], [b"foo", b"bar", b"baz", b"bat"]),
            "float_tensor": t("float", [2, 2], [1.0, math.nan, 2.0, math.inf]),
            "dbl_tensor": t("double", [2, 1], [math.nan, 2.0]),
        },
    ),
    # tensorflow_serving/util/json_tensor_test.cc:388
    (
        "JSON-SingleUnnamedTensorColumnarFormat-named",
        '{"inputs": {"int_tensor": [[[1,2],[3,4],[5,6]]]}}',
        {"int_tensor": "int32"},
        "columnar",
        {"int_tensor": t("int32", [1, 3, 2], [1, 2, 3, 4, 5, 6])},
    ),
    # tensorflow_serving/util/json_tensor_test.cc:415
    (
        "JSON-SingleUnnamedTensorColumnarFormat-unnamed",
        '{"inputs": [[[1,2],[3,4],[5,6]]]}',
        {"int_tensor": "int32"},
        "columnar",
        {"int_tensor": t("int32", [1, 3, 2], [1, 2, 3, 4, 5, 6])},
    ),
    # tensorflow_serving/util/json_tensor_test.cc:457
    (
        "JSON-MultipleNamedTensorColumnarFormat",
        (
            '{"inputs": {"int_tensor": [[[1,2],[3,4],[5,6]]], "str_tensor": ["foo", "bar"],'
            ' "bin_tensor": {"b64": "aGVsbG8="}}}'
        ),
        {"int_tensor": "int32", "str_tensor": "string", "bin_tensor": "string"},
        "columnar",
        {
            "int_tensor": t("int32", [1, 3, 2], [1, 2, 3, 4, 5, 6]),
            "str_tensor": t("string", [2], [b"foo", b"bar"]),
            "bin_tensor": t("string", [], [b"hello"]),
        },
    ),
]


def _same(a, b) -> bool:
    return (
        a == b
        or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))
        or (isinstance(a, float) and isinstance(b, (int, float)) and np.float32(a) == np.float32(b))
    )


@pytest.mark.parametrize("text, infomap, form, expected", [pytest.param(*c[1:], id=c[0]) for c in FILL_CASES])
def test_json_fill(text, infomap, form, expected):
    got_form, tensors = fill(text, infomap)
    assert got_form == form and set(tensors) == set(expected)
    for name, tensor in expected.items():
        got = tensors[name]
        assert (got.dtype, got.shape) == (tensor.dtype, tensor.shape)
        assert len(got.values) == len(tensor.values) and all(map(_same, got.values, tensor.values))


ONE_INT = {"default": "int32"}
TWO = {"int_tensor": "int32", "str_tensor": "string"}
FILL_ERRORS = [
    # tensorflow_serving/util/json_tensor_test.cc:494
    ("JSON-SingleUnnamedTensorErrors-empty", "", ONE_INT, "document is empty"),
    # tensorflow_serving/util/json_tensor_test.cc:503
    (
        "JSON-SingleUnnamedTensorErrors-signature-5",
        '{"signature_name": 5, "instances": [[1,2],[3,4],[5,6,7]]}',
        ONE_INT,
        "must be a string value",
    ),
    # tensorflow_serving/util/json_tensor_test.cc:512
    (
        "JSON-SingleUnnamedTensorErrors-both-keys",
        '{"instances": [[1,2]], "inputs": [[1,2]]}',
        ONE_INT,
        "Not formatted correctly",
    ),
    # tensorflow_serving/util/json_tensor_test.cc:520
    (
        "JSON-SingleUnnamedTensorErrors-tensor-size",
        '{"instances": [[1,2],[3,4],[5,6,7]]}',
        ONE_INT,
        "Expecting tensor size",
    ),
    # tensorflow_serving/util/json_tensor_test.cc:528
    ("JSON-SingleUnnamedTensorErrors-shape", '{"instances": [[1,2],[3,4],[[5,6]]]}', ONE_INT, "Expecting shape"),
    # tensorflow_serving/util/json_tensor_test.cc:536
    ("JSON-SingleUnnamedTensorErrors-shape-scalar-then-list", '{"instances": [1, [1]]}', ONE_INT, "Expecting shape"),
    # tensorflow_serving/util/json_tensor_test.cc:544
    ("JSON-SingleUnnamedTensorErrors-type", '{"instances": [[1,2],["a", "b"]]}', ONE_INT, "not of expected type"),
    # tensorflow_serving/util/json_tensor_test.cc:553
    (
        "JSON-SingleUnnamedTensorErrors-double-max-to-float",
        f'{{"instances": [{sys.float_info.max!r}]}}',
        {"default": "float"},
        "loss of precision",
    ),
    # tensorflow_serving/util/json_tensor_test.cc:561
    (
        "JSON-SingleUnnamedTensorErrors-16777217-to-float",
        '{"instances": [16777217]}',
        {"default": "float"},
        "loss of precision",
    ),
    # tensorflow_serving/util/json_tensor_test.cc:569
    (
        "JSON-SingleUnnamedTensorErrors-9007199254740993-to-double",
        '{"instances": [9007199254740993]}',
        {"default": "double"},
        "loss of precision",
    ),
    # tensorflow_serving/util/json_tensor_test.cc:600
    (
        "JSON-MultipleNamedTensorErrors-shape",
        (
            '{"instances": [{"int_tensor": [[1,2],[3,4],[5,6]], "str_tensor": ["foo", "bar"]},'
            ' {"int_tensor": [[[7,8],[9,0],[1,2]]], "str_tensor": ["baz", "bat"]}]}'
        ),
        TWO,
        "Expecting shape",
    ),
    # tensorflow_serving/util/json_tensor_test.cc:619
    (
        "JSON-MultipleNamedTensorErrors-size",
        (
            '{"instances": [{"int_tensor": [[1,2],[3,4],[5,6],[7,8]], "str_tensor": ["foo", "bar"]},'
            ' {"int_tensor": [[7,8],[9,0],[1,2]], "str_tensor": ["baz", "bat"]}]}'
        ),
        TWO,
        "Expecting tensor size",
    ),
    # tensorflow_serving/util/json_tensor_test.cc:641
    (
        "JSON-MultipleNamedTensorErrors-object-then-list",
        (
            '{"instances": [{"int_tensor": [[1,2],[3,4],[5,6]], "str_tensor": ["foo", "bar"]}, [1, 20, 30],'
            ' {"int_tensor": [[[7,8],[9,0],[1,2]]], "str_tensor": ["baz", "bat"]}]}'
        ),
        TWO,
        "Expecting object but got list",
    ),
    # tensorflow_serving/util/json_tensor_test.cc:661
    (
        "JSON-MultipleNamedTensorErrors-list-then-object",
        '{"instances": [["baz", "bar"], {"str_tensor": ["baz"]}]}',
        {"str_tensor": "string"},
        "Expecting value/list but got object",
    ),
    # tensorflow_serving/util/json_tensor.cc:514
    (
        "JSON-plain-list-for-two-inputs",
        '{"instances": [1, 2]}',
        TWO,
        "instances is a plain list, but expecting list of objects as multiple input tensors required",
    ),
    # tensorflow_serving/util/json_tensor.cc:606
    (
        "JSON-plain-inputs-for-two-inputs",
        '{"inputs": [1, 2]}',
        TWO,
        "inputs is a plain value/list, but expecting an object as multiple input tensors required",
    ),
    # tensorflow_serving/util/json_tensor.cc:558
    (
        "JSON-instances-object-missing-key",
        '{"instances": [{"int_tensor": 1}]}',
        TWO,
        "must only have keys: int_tensor,str_tensor",
    ),
]


@pytest.mark.parametrize("text, infomap, message", [pytest.param(*c[1:], id=c[0]) for c in FILL_ERRORS])
def test_json_fill_errors(text, infomap, message):
    with pytest.raises(ServingError) as error:
        fill(text, infomap)
    assert error.value.code == "INVALID_ARGUMENT" and message in error.value.message


INT_2_3_2 = np.array([1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2], dtype=np.int32).reshape(2, 3, 2)
BYTES_2_2 = np.array([b"hello", b"world", b"tf", b"serving"], dtype=object).reshape(2, 2)
OUTPUT_CASES = [
    # tensorflow_serving/util/json_tensor_test.cc:726
    (
        "JSON-FromJsonSingleTensor-row",
        {"int_tensor": INT_2_3_2},
        "row",
        '{"predictions": [[[1, 2], [3, 4], [5, 6]], [[7, 8], [9, 0], [1, 2]]]}',
    ),
    # tensorflow_serving/util/json_tensor_test.cc:733
    (
        "JSON-FromJsonSingleTensor-columnar",
        {"int_tensor": INT_2_3_2},
        "columnar",
        '{"outputs": [[[1, 2], [3, 4], [5, 6]], [[7, 8], [9, 0], [1, 2]]]}',
    ),
    # tensorflow_serving/util/json_tensor_test.cc:756
    (
        "JSON-FromJsonSingleScalarTensor-row",
        {"int_tensor": np.arange(1, 6, dtype=np.int32)},
        "row",
        '{"predictions": [1, 2, 3, 4, 5]}',
    ),
    # tensorflow_serving/util/json_tensor_test.cc:761
    (
        "JSON-FromJsonSingleScalarTensor-columnar",
        {"int_tensor": np.arange(1, 6, dtype=np.int32)},
        "columnar",
        '{"outputs": [1, 2, 3, 4, 5]}',
    ),
    # tensorflow_serving/util/json_tensor_test.cc:782
    (
        "JSON-FromJsonSingleBytesTensor",
        {"str_tensor_bytes": BYTES_2_2},
        "row",
        '{"predictions": [[{"b64": "aGVsbG8="}, {"b64": "d29ybGQ="}], [{"b64": "dGY="}, {"b64": "c2VydmluZw=="}]]}',
    ),
    # tensorflow_serving/util/json_tensor_test.cc:811
    (
        "JSON-FromJsonSingleFloatTensorSixDigitPrecision",
        {"float_tensor": np.array([[9000000, 999999, 0.5], [0.0003, 0.00003, 555557.5]], dtype=np.float32)},
        "row",
        '{"predictions": [[9e+06, 999999.0, 0.5], [0.0003, 3e-05, 555557.5]]}',
    ),
    # tensorflow_serving/util/json_tensor_test.cc:836
    (
        "JSON-FromJsonSingleFloatTensorNonFinite",
        {"float_tensor": np.array([[np.nan, np.inf], [3, -np.inf]], dtype=np.float32)},
        "row",
        '{"predictions": [[NaN, Infinity], [3.0, -Infinity]]}',
    ),
    # tensorflow_serving/util/json_tensor_test.cc:952
    (
        "JSON-FromJsonMultipleNamedTensors-row",
        {
            "int_tensor": INT_2_3_2,
            "str_tensor": np.array([b"foo", b"bar", b"baz", b"bat"], dtype=object).reshape(2, 2),
            "float_tensor": np.array([[1.0], [2.0]], dtype=np.float32),
            "double_scalar_tensor": np.array([8.0, 9.0]),
            "str_tensor_bytes": BYTES_2_2,
        },
        "row",
        (
            '{"predictions": [{"double_scalar_tensor": 8.0, "float_tensor": [1.0], "int_tensor": [[1, 2], [3, 4], [5, 6]],'
            ' "str_tensor": ["foo", "bar"], "str_tensor_bytes": [{"b64": "aGVsbG8="}, {"b64": "d29ybGQ="}]},'
            ' {"double_scalar_tensor": 9.0, "float_tensor": [2.0], "int_tensor": [[7, 8], [9, 0], [1, 2]],'
            ' "str_tensor": ["baz", "bat"], "str_tensor_bytes": [{"b64": "dGY="}, {"b64": "c2VydmluZw=="}]}]}'
        ),
    ),
    # tensorflow_serving/util/json_tensor_test.cc:973
    (
        "JSON-FromJsonMultipleNamedTensors-columnar",
        {
            "int_tensor": INT_2_3_2,
            "float_tensor": np.array([[1.0], [2.0]], dtype=np.float32),
            "double_scalar_tensor": np.array([8.0, 9.0]),
        },
        "columnar",
        (
            '{"outputs": {"double_scalar_tensor": [8.0, 9.0], "float_tensor": [[1.0], [2.0]],'
            ' "int_tensor": [[[1, 2], [3, 4], [5, 6]], [[7, 8], [9, 0], [1, 2]]]}}'
        ),
    ),
]


def _as_strings(text: str):
    """CompareJsonAllValuesAsStrings(): numbers compared as they are written."""
    return json.loads(text, parse_float=str, parse_int=str, parse_constant=str)


@pytest.mark.parametrize("tensors, form, expected", [pytest.param(*c[1:], id=c[0]) for c in OUTPUT_CASES])
def test_json_from_tensors(tensors, form, expected):
    assert _as_strings(dumps(make_json_from_tensors(tensors, form)).decode()) == _as_strings(expected)


@pytest.mark.parametrize(
    "tensors, message",
    [
        # tensorflow_serving/util/json_tensor_test.cc:851
        pytest.param({}, "empty tensor map", id="JSON-FromJsonSingleTensorErrors-empty"),
        # tensorflow_serving/util/json_tensor_test.cc:865
        pytest.param(
            {"tensor": np.array([1 + 2j, 2], dtype=np.complex64)},
            "tensor type: complex64",
            id="JSON-FromJsonSingleTensorErrors-complex64",
        ),
        # tensorflow_serving/util/json_tensor_test.cc:875
        pytest.param(
            {"tensor": np.array(1, dtype=np.int32)},
            "no shape information",
            id="JSON-FromJsonSingleTensorErrors-no-shape",
        ),
        # tensorflow_serving/util/json_tensor_test.cc:1017
        pytest.param(
            {"int_tensor": np.zeros((2, 3), np.int32), "str_tensor": np.array([[b"a", b"b", b"c"]], object)},
            "inconsistent batch size",
            id="JSON-FromJsonMultipleNamedTensorsErrors",
        ),
    ],
)
def test_json_from_tensors_errors(tensors, message):
    with pytest.raises(ServingError) as error:
        make_json_from_tensors(tensors, "row")
    assert error.value.code == "INVALID_ARGUMENT" and message in error.value.message


def _examples(text: str):
    from tensorflow.core.example import example_pb2

    parsed = []
    for serialized in fill_examples(parse_json(text.encode())):
        example = example_pb2.Example.FromString(serialized)
        parsed.append(
            {
                k: (f.WhichOneof("kind"), list(getattr(f, f.WhichOneof("kind")).value))
                for k, f in example.features.feature.items()
            }
        )
    return parsed


def test_json_classify_regress_request_no_context():
    """JSON TYPED_TEST(ClassifyRegressRequestTest, RequestNoContext):
    tensorflow_serving/util/json_tensor_test.cc:1101."""
    assert _examples(
        '{"examples": [{"names": ["foo", "bar"], "ratings": [8.0, 9.0], "age": 20},'
        ' {"names": ["baz"], "ratings": 6.0}]}'
    ) == [
        {"names": ("bytes_list", [b"foo", b"bar"]), "ratings": ("float_list", [8.0, 9.0]), "age": ("int64_list", [20])},
        {"names": ("bytes_list", [b"baz"]), "ratings": ("float_list", [6.0])},
    ]


def test_json_classify_regress_request_with_context_and_signature():
    """JSON TYPED_TEST(ClassifyRegressRequestTest, RequestWithContextAndSignature):
    tensorflow_serving/util/json_tensor_test.cc:1233."""
    examples = _examples(
        '{"signature_name": "custom_signture", "context": {"query": "pizza", "location": ["sfo"]},'
        ' "examples": [{"names": ["foo", "bar"], "ratings": [8.0, 9.0, NaN, Infinity], "age": 20},'
        ' {"names": ["baz", {"b64": "aGVsbG8="}], "ratings": 6.0, "intboolmix": [1, true, false]},'
        ' {"names": "bar", "ratings": -Infinity}]}'
    )
    assert all(e["query"] == ("bytes_list", [b"pizza"]) and e["location"] == ("bytes_list", [b"sfo"]) for e in examples)
    assert examples[1]["names"] == ("bytes_list", [b"baz", b"hello"])
    assert examples[1]["intboolmix"] == ("int64_list", [1, 1, 0])
    assert examples[2]["ratings"] == ("float_list", [-math.inf])
    ratings = examples[0]["ratings"][1]
    assert ratings[:2] == [8.0, 9.0] and math.isnan(ratings[2]) and ratings[3] == math.inf


@pytest.mark.parametrize(
    "text, message",
    [
        # tensorflow_serving/util/json_tensor_test.cc:1248
        pytest.param(
            '{"signature_name": ["hello"], "examples": [{"names": ["foo", "bar"]}]}',
            "'signature_name' key must be a string",
            id="JSON-ClassifyRegress-JsonErrors-signature",
        ),
        # tensorflow_serving/util/json_tensor_test.cc:1257
        pytest.param(
            '{"context": [{"names": ["foo", "bar"]}]}',
            "Example must be JSON object",
            id="JSON-ClassifyRegress-JsonErrors-context-list",
        ),
        # tensorflow_serving/util/json_tensor_test.cc:1266
        pytest.param(
            '{"examples": {"names": ["foo", "bar"]}}',
            "list/array",
            id="JSON-ClassifyRegress-JsonErrors-examples-object",
        ),
        # tensorflow_serving/util/json_tensor_test.cc:1275
        pytest.param(
            '{"examples": [[{"names": ["foo", "bar"]}]]}',
            "Example must be JSON object",
            id="JSON-ClassifyRegress-JsonErrors-nested-list",
        ),
        # tensorflow_serving/util/json_tensor_test.cc:1285
        pytest.param(
            '{"examples": [{"names": [10, null]}]}',
            "names has element with unexpected JSON type: Null",
            id="JSON-ClassifyRegress-JsonErrors-null",
        ),
        # tensorflow_serving/util/json_tensor_test.cc:1295
        pytest.param(
            '{"examples": [{"names": [10, 10.0]}]}',
            "feature: names expecting type: int64",
            id="JSON-ClassifyRegress-JsonErrors-int-then-float",
        ),
        # tensorflow_serving/util/json_tensor_test.cc:1305
        pytest.param(
            '{"examples": [{"names": [10, {"test": 10}]}]}',
            "names has element with unexpected JSON type: Object",
            id="JSON-ClassifyRegress-JsonErrors-object",
        ),
        # tensorflow_serving/util/json_tensor_test.cc:1315
        pytest.param(
            '{"examples": [{"names": [[10], 20]}]}',
            "names has element with unexpected JSON type: Array",
            id="JSON-ClassifyRegress-JsonErrors-array",
        ),
        # tensorflow_serving/util/json_tensor_test.cc:1324
        pytest.param(
            '{"examples": [{"names": [20, 18446744073709551603]}]}',
            "Only int64 is supported",
            id="JSON-ClassifyRegress-JsonErrors-uint64",
        ),
        # tensorflow_serving/util/json_tensor_test.cc:1332
        pytest.param(
            f'{{"examples": [{{"names": {sys.float_info.max!r}}}]}}',
            "loss of precision",
            id="JSON-ClassifyRegress-JsonErrors-double-max",
        ),
        # tensorflow_serving/util/json_tensor.cc:839
        pytest.param(
            '{"examples": []}', "'examples' value is an empty array", id="JSON-ClassifyRegress-empty-examples"
        ),
    ],
)
def test_json_classify_regress_errors(text, message):
    with pytest.raises(ServingError) as error:
        fill_examples(parse_json(text.encode()))
    assert error.value.code == "INVALID_ARGUMENT" and message in error.value.message
