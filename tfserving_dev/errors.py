"""What the TF Serving stand-in's parts share: status codes, errors, the lazy TensorFlow import."""

import logging
import os
import threading

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

log = logging.getLogger(__name__)

METRICS_PATH = "/monitoring/prometheus/metrics"
DEFAULT_SIGNATURE = "serving_default"
REQUEST_COUNT = ":tensorflow:serving:request_count"
REQUEST_LATENCY = ":tensorflow:serving:request_latency"
# TF Serving's request_latency buckets: Buckets::Exponential(10, 1.8, 33), microseconds,
# from 10 us up to ~24 minutes. Rounded to six significant digits, as TF prints them.
LATENCY_BUCKETS = tuple(float(f"{10 * 1.8**i:.6g}") for i in range(33))

# Version states, as TF Serving's ModelVersionStatus names them.
START, LOADING, AVAILABLE, UNLOADING, END = "START", "LOADING", "AVAILABLE", "UNLOADING", "END"

# TF Serving's mapping from status codes to HTTP (model_servers/http_server.cc).
HTTP_STATUS = {
    "OK": 200,
    "CANCELLED": 499,
    "UNKNOWN": 500,
    "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403,
    "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400,
    "ABORTED": 409,
    "OUT_OF_RANGE": 400,
    "UNIMPLEMENTED": 501,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DATA_LOSS": 500,
    "UNAUTHENTICATED": 401,
}
# tf.errors codes by number, so a load failure reports the same code name TF Serving would.
_CODE_NAMES = (
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
)


class ServingError(Exception):
    """A failed request, carrying TF Serving's status code name (e.g. "NOT_FOUND")."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        return HTTP_STATUS.get(self.code, 500)


_IMPORT_LOCK = threading.Lock()


def _tf():
    # Heavy: only a server that loads models pays for it. Two threads importing TensorFlow at
    # once (pods of the test API server load models in threads) can hand one of them a
    # half-initialised module, since TF's imports have cycles and Python breaks a cross-thread
    # import deadlock that way; so the first import happens under one lock.
    with _IMPORT_LOCK:
        import tensorflow as tf  # noqa: PLC0415

    return tf
