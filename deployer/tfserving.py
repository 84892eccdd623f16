"""Facts about TensorFlow Serving's interface, written once: its ports, REST paths, version
states and Prometheus names.

The deployer builds manifests, probes and metric queries from these; the development server
(tfserving_dev) answers with them. A pure module of constants and string functions: it imports
nothing else from the project, so the development server can import it without the deployer
(an import-linter contract in pyproject.toml holds both to that).
"""

from urllib.parse import quote

# tensorflow_model_server's default ports: gRPC on --port, REST on --rest_api_port as the
# serving image starts it (tensorflow/serving's Dockerfile: --rest_api_port=8501).
GRPC_PORT = 8500
REST_PORT = 8501

# The signature a request names when it names none (tensorflow/cc/saved_model/signature_constants.h).
DEFAULT_SIGNATURE = "serving_default"

# A version's states, as ModelVersionStatus names them (apis/get_model_status.proto).
START, LOADING, AVAILABLE, UNLOADING, END = "START", "LOADING", "AVAILABLE", "UNLOADING", "END"

# --- Prometheus (with a monitoring config that enables it) ---

# PrometheusExporter::kPrometheusPath (util/prometheus_exporter.cc), the path when
# monitoring.config names none.
METRICS_PATH = "/monitoring/prometheus/metrics"
# Counted for every /v1 request, status and metadata included (model_servers/http_server.cc).
REQUEST_COUNT = ":tensorflow:serving:request_count"
# Successful requests only, in microseconds (http_server.cc).
REQUEST_LATENCY = ":tensorflow:serving:request_latency"
# The model's own run time (servables/tensorflow/predict_util.cc, classifier.cc, regressor.cc).
RUNTIME_LATENCY = ":tensorflow:serving:runtime_latency"
# One per SavedModel load, "success" or "fail" (tensorflow/cc/saved_model/loader.cc).
LOAD_ATTEMPT_COUNT = ":tensorflow:cc:saved_model:load_attempt_count"
# The latency histograms' buckets: Buckets::Exponential(10, 1.8, 33), microseconds, from
# 10 us up to ~24 minutes. Rounded to six significant digits, as TF prints them.
LATENCY_BUCKETS = tuple(float(f"{10 * 1.8**i:.6g}") for i in range(33))


# --- REST paths (model_servers/http_rest_api_handler.cc) ---


def model_path(model: str, *, version: int | str | None = None, label: str | None = None) -> str:
    """``/v1/models/<model>``, optionally ``/versions/<n>`` or ``/labels/<label>``; append
    ``/metadata`` for metadata or ``:predict`` (``:classify``, ``:regress``) to run it."""
    path = f"/v1/models/{quote(model, safe='')}"
    if version is not None:
        return f"{path}/versions/{version}"
    if label is not None:
        return f"{path}/labels/{quote(label, safe='')}"
    return path
