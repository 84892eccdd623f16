"""A development stand-in for TensorFlow Serving on one machine.

Production runs the real tensorflow_model_server on Kubernetes (see manifests.py). This
module serves the same SavedModel layout, reads the same models.config, takes the same
command-line flags and answers the same REST API, so the local runtime backend and the
end-to-end tests exercise exactly what clients will see in production:

    python -m deployer.local_server --rest_api_port=8501 --model_config_file=models.config

What it copies from TF Serving, and why it matters here:
- Version states START -> LOADING -> AVAILABLE (or END with an error), reported by
  /v1/models/<name>: the readiness probe and Modelgate's rollout checks read them.
- Error messages and HTTP codes (404 "Servable not found for request: Specific(m, 3)",
  400 for a bad label or input), so callers' error handling is tested for real.
- Metrics under TF Serving's own names, recorded where TF Serving records them, so
  dashboards and canary analysis can be built against this server (only with
  --monitoring_config_file, as tensorflow_model_server).

It serves REST only (no gRPC): predict, classify, regress, status and metadata, held against
TF Serving's own test cases by tests/test_tfserving_conformance.py (differences kept on
purpose: docs/tfserving-dev.md). Only the standard library, TensorFlow and prometheus_client
are used; TensorFlow is imported on first load so importing this module stays cheap.
"""

import gzip
import json
import logging
import os
import re
import signal
import sys
import threading
import time
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

from deployer import tfserving_flags
from deployer.tfserving_common import (
    AVAILABLE,
    END,
    LOADING,
    METRICS_PATH,
    START,
    ServingError,
)
from deployer.tfserving_config import (
    ModelConfig,
    _config_text,
    aspired_versions,
    parse_models_config,
    parse_monitoring_config,
    version_dirs,
)
from deployer.tfserving_metrics import ServingMetrics
from deployer.tfserving_tensors import (
    Servable,
    _error_code,
    _error_message,
    classify,
    dumps,
    fill_examples,
    load_savedmodel,
    metadata,
    parse_json,
    predict,
    regress,
    signature_name,
)

log = logging.getLogger(__name__)

# --- versions and their states ---


@dataclass
class VersionStatus:
    state: str = START
    error_code: str = "OK"
    error_message: str = ""
    servable: Servable | None = None

    def as_json(self, version: int) -> dict:
        return {
            "version": str(version),
            "state": self.state,
            "status": {"error_code": self.error_code, "error_message": self.error_message},
        }


@dataclass
class _Model:
    config: ModelConfig
    aspired: set = field(default_factory=set)
    dirs: dict = field(default_factory=dict)  # version -> directory name ("00000123" for 123)
    versions: dict = field(default_factory=dict)  # int -> VersionStatus


class ModelManager:
    """Which versions are aspired, loading and serving; every change wakes up waiters."""

    def __init__(
        self, loader=load_savedmodel, on_load=None, *, max_num_load_retries: int = 0, load_retry_interval: float = 0.0
    ):
        self._loader = loader
        self._on_load = on_load  # (path, ok): the load_attempt_count metric
        # TF Serving retries a failed load (--max_num_load_retries, default 5, one minute apart);
        # the version stays LOADING meanwhile and is END with the error only when they run out.
        self._retries = max(0, max_num_load_retries)
        self._retry_interval = max(0.0, load_retry_interval)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        # One load at a time, as TF Serving's default (num_load_threads=0): predictable memory.
        self._load_lock = threading.Lock()
        self._models: dict[str, _Model] = {}
        self._configs: list[ModelConfig] = []

    def apply(self, configs: list[ModelConfig], *, retry_ended: bool = True) -> None:
        """Make the served versions match the configs and the version directories on disk.

        New versions load in a background thread; versions no longer aspired are unloaded
        only once no aspired version is still loading, so a switch from v1 to v2 never leaves
        a gap. retry_ended=False (the periodic disk poll) does not retry failed versions."""
        with self._lock:
            self._configs = list(configs)
            plan = [(name, self._plan(model, retry_ended)) for name, model in self._sync(configs).items()]
            plan = [(name, to_load) for name, to_load in plan if to_load or self._has_unaspired(name)]
        for name, to_load in plan:
            threading.Thread(
                target=self._load_then_unload, args=(name, to_load), name=f"load-{name}", daemon=True
            ).start()

    def refresh(self) -> None:
        """Pick up version directories that appeared or disappeared (TF Serving polls too)."""
        with self._lock:
            configs = list(self._configs)
        self.apply(configs, retry_ended=False)

    def _has_unaspired(self, name: str) -> bool:
        model = self._models[name]
        return any(v not in model.aspired and s.state in (START, AVAILABLE) for v, s in model.versions.items())

    def _sync(self, configs: list[ModelConfig]) -> dict:
        wanted = {c.name: c for c in configs}
        for name, model in self._models.items():
            if name not in wanted:
                model.aspired = set()  # removed from the config: unload everything
        for name, config in wanted.items():
            model = self._models.setdefault(name, _Model(config=config))
            model.config = config
            model.dirs = version_dirs(config.base_path)
            model.aspired = aspired_versions(config, sorted(model.dirs))
        return self._models

    def _plan(self, model: _Model, retry_ended: bool) -> list[int]:
        to_load = []
        for version in sorted(model.aspired):
            current = model.versions.get(version)
            if current is None or (retry_ended and current.state == END):
                model.versions[version] = VersionStatus(state=START)
                to_load.append(version)
        self._changed.notify_all()
        return to_load

    def _load_then_unload(self, name: str, versions: list[int]) -> None:
        for version in versions:
            self._load(name, version)
        self._unload_unaspired(name)

    def _load(self, name: str, version: int) -> None:
        with self._lock:
            model = self._models[name]
            path = os.path.join(model.config.base_path, model.dirs.get(version, str(version)))
            self._set(model, version, VersionStatus(state=LOADING))
        log.info("Loading servable: {name: %s version: %s} from %s", name, version, path)
        for attempt in range(self._retries + 1):
            with self._load_lock:
                try:
                    outcome = VersionStatus(state=AVAILABLE, servable=self._loader(path))
                    break
                except Exception as exc:  # any failure is the version's status, as in TF Serving
                    if self._on_load:
                        self._on_load(path, False)
                    log.warning("Loading servable %s version %s failed: %s", name, version, exc)
                    outcome = VersionStatus(state=END, error_code=_error_code(exc), error_message=_error_message(exc))
            with self._lock:
                if version not in model.aspired:
                    break  # no longer wanted: TF Serving cancels the retries too
            if attempt < self._retries:
                log.info(
                    "Retrying load on servable version {name: %s version: %s} (retry %s of %s)",
                    name,
                    version,
                    attempt + 1,
                    self._retries,
                )
                time.sleep(self._retry_interval)
        if outcome.state == AVAILABLE and self._on_load:
            self._on_load(path, True)
        with self._lock:
            # A reload may have dropped this version while it loaded: then it must not serve.
            if outcome.state == AVAILABLE and version not in model.aspired:
                outcome = VersionStatus(state=END)
            self._set(model, version, outcome)
        log.info("Servable %s version %s is %s", name, version, outcome.state)

    def _unload_unaspired(self, name: str) -> None:
        with self._lock:
            model = self._models[name]
            if any(s.state in (START, LOADING) for v, s in model.versions.items() if v in model.aspired):
                return  # the thread loading those unloads when it is done
            for version, status in list(model.versions.items()):
                if version not in model.aspired and status.state in (START, AVAILABLE):
                    # END with an OK status is how TF Serving reports a cleanly unloaded version.
                    self._set(model, version, VersionStatus(state=END))
                    log.info("Unloaded servable %s version %s", name, version)

    def _set(self, model: _Model, version: int, status: VersionStatus) -> None:
        model.versions[version] = status
        self._changed.notify_all()

    def check_labels(self, configs: list[ModelConfig], *, allow_unavailable: bool) -> None:
        """Refuse a config whose version_labels point at a version that is not AVAILABLE, as
        TF Serving's ServerCore::UpdateModelVersionLabelMap does before it loads anything
        (server_core.cc:498-533). With --allow_version_labels_for_unavailable_models a label
        that is new, or keeps its version, may point anywhere; moving an existing label onto a
        version that is not AVAILABLE is refused even then."""
        with self._lock:
            current = {c.name: dict(c.labels) for c in self._configs}
            for config in configs:
                model = self._models.get(config.name)
                for label, version in config.labels:
                    existing = current.get(config.name, {}).get(label)
                    allowed = allow_unavailable and (existing is None or existing == version)
                    status = model.versions.get(version) if model else None
                    if not allowed and (status is None or status.state != AVAILABLE):
                        raise ServingError(
                            "FAILED_PRECONDITION",
                            f"Request to assign label to version {version} of model "
                            f"{config.name}, which is not currently available for inference",
                        )

    def latest_states(self) -> dict[str, tuple[int | None, VersionStatus | None]]:
        """Each configured model's highest aspired version and its status (None before the
        version directories were read): what TF Serving awaits at startup, a Latest request."""
        with self._lock:
            result = {}
            for config in self._configs:
                model = self._models.get(config.name)
                version = max(model.aspired) if model and model.aspired else None
                result[config.name] = (version, model.versions.get(version) if model and version is not None else None)
            return result

    # -- lookups used by requests --

    def status(self, name: str, version: int | None = None) -> list[dict]:
        """GetModelStatusImpl: one version, or all of them. It is given no label: TF Serving's
        GetModelStatus ignores a version label and lists every version
        (model_servers/get_model_status_impl.cc)."""
        with self._lock:
            model = self._models.get(name)
            known = model.versions if model else {}
            if version is not None:
                if version not in known:
                    raise ServingError("NOT_FOUND", f"Could not find version {version} of model {name}")
                return [known[version].as_json(version)]
            if not known:
                raise ServingError("NOT_FOUND", f"Could not find any versions of model {name}")
            # Newest first, the order of TF Serving's ServableStateMonitor.
            return [known[v].as_json(v) for v in sorted(known, reverse=True)]

    def servable(self, name: str, version: int | None = None, label: str | None = None) -> tuple[int, Servable]:
        """The (version, Servable) a request is for; not-yet-AVAILABLE versions are not found."""
        with self._lock:
            model = self._models.get(name)
            if label is not None:
                version = self._label_version(model, label)
            available = {v: s.servable for v, s in (model.versions.items() if model else ()) if s.state == AVAILABLE}
            if version is None and available:
                version = max(available)
            if version in available:
                return version, available[version]
        request = f"Specific({name}, {version})" if version is not None else f"Latest({name})"
        raise ServingError("NOT_FOUND", f"Servable not found for request: {request}")

    @staticmethod
    def _label_version(model: _Model | None, label: str) -> int:
        labels = dict(model.config.labels) if model else {}
        if label not in labels:
            raise ServingError("INVALID_ARGUMENT", f"Unrecognized servable version label: {label}")
        return labels[label]

    def wait_for(self, name: str, version: int, states: set, timeout: float) -> VersionStatus:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                status = self._models.get(name) and self._models[name].versions.get(version)
                if status and status.state in states:
                    return status
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    now = status.state if status else "absent"
                    raise TimeoutError(f"{name} version {version} is {now}, not {sorted(states)}, after {timeout} s.")
                self._changed.wait(remaining)


# --- HTTP ---

# TF Serving's routes (model_servers/http_rest_api_util.cc): matched case-insensitively, but the
# verb is then compared exactly (http_rest_api_handler.cc), so ":PREDICT" is a malformed request.
_API_PATH = re.compile(r"(?i)/v1/.*")
_PREDICT_PATH = re.compile(
    r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)", re.IGNORECASE
)
_STATUS_PATH = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?", re.I
)
_CORS_HEADERS = (
    ("Access-Control-Allow-Origin", "*"),
    ("Access-Control-Allow-Methods", "POST, GET"),
    ("Access-Control-Allow-Headers", "Content-Type"),
)
# libevent's evhttp_send_error() page, which TF Serving answers for a path it does not serve.
_NOT_FOUND_PAGE = b"<HTML><HEAD>\n<TITLE>404 Not Found</TITLE>\n</HEAD><BODY>\n<H1>Not Found</H1>\n</BODY></HTML>\n"


@dataclass
class Reply:
    status: int
    body: bytes = b""
    headers: list = field(default_factory=list)


class _Request:
    """What ParseModelInfo() reads off a request (http_rest_api_util.cc)."""

    def __init__(self, method: str, path: str):
        self.model_name = ""
        self.version: int | None = None
        self.label: str | None = None
        self.verb = ""
        self.subresource = ""
        self.parse_error: ServingError | None = None
        pattern = _PREDICT_PATH if method == "POST" else _STATUS_PATH if method == "GET" else None
        match = pattern.fullmatch(path) if pattern else None
        self.parsed = match is not None
        if not match:
            return
        self.model_name = unquote(match.group(1) or "")
        if match.group(2):
            self.version = int(match.group(2))
            if self.version >= 2**63:  # absl::SimpleAtoi into an int64
                self.parse_error = ServingError(
                    "INVALID_ARGUMENT", f"Failed to convert version: {match.group(2)} to numeric."
                )
        if match.group(3):
            self.label = unquote(match.group(3))
        if method == "POST":
            self.verb = match.group(4)
        else:
            self.subresource = match.group(4) or ""


class _App:
    """Routes a request as TF Serving's http_server.cc and http_rest_api_handler.cc do, and
    records the metrics where they record them."""

    def __init__(self, manager: ModelManager, metrics: ServingMetrics, metrics_path: str | None, cors: bool = False):
        self.manager = manager
        self.metrics = metrics
        self.metrics_path = metrics_path
        self.cors = cors

    def handle(self, method: str, path_and_query: str, body: bytes, headers=None) -> Reply:
        path = urlsplit(path_and_query).path
        if self.metrics_path and path == self.metrics_path:
            # Registered by path for every method; the handler compares the path with its query.
            if path_and_query != self.metrics_path:
                return Reply(
                    400,
                    f"Unexpected path: {path_and_query}. Should be {self.metrics_path}".encode(),
                    [("Content-Type", "text/plain")],
                )
            return Reply(200, self.metrics.exposition().encode(), [("Content-Type", "text/plain")])
        if not _API_PATH.fullmatch(path_and_query):
            return Reply(404, _NOT_FOUND_PAGE, [("Content-Type", "text/html; charset=ISO-8859-1")])
        started = time.perf_counter()
        model_name, verb, reply, code = "", "", Reply(200), "OK"
        if method == "OPTIONS":  # a CORS preflight: no body either way
            if not re.search(r"https?://", (headers or {}).get("Origin", "")):
                reply, code = Reply(400), "FAILED_PRECONDITION"
        else:
            reply = Reply(200, headers=[("Content-Type", "application/json")])
            request = _Request(method, path_and_query)
            model_name, verb = request.model_name, request.verb
            try:
                if request.parse_error:
                    # ParseModelInfo's error returns before the handler writes the error JSON.
                    log.info("%s %s: %s", method, path_and_query, request.parse_error.message)
                    reply.status, code = request.parse_error.http_status, request.parse_error.code
                else:
                    reply.body = dumps(self._dispatch(method, path_and_query, request, body))
            except ServingError as exc:
                code = exc.code
                reply.status = exc.http_status
                reply.body = dumps({"error": exc.message})
            except Exception as exc:  # a bug here must still answer, and be counted
                log.exception("request failed")
                code, reply.status, reply.body = "INTERNAL", 500, dumps({"error": str(exc)})
        if self.cors:
            reply.headers.extend(_CORS_HEADERS)
        micros = (time.perf_counter() - started) * 1e6
        self.metrics.record(model_name=model_name, api=verb, status=code, micros=micros)
        return reply

    def _dispatch(self, method: str, path: str, request: _Request, body: bytes) -> dict:
        if method == "POST" and request.parsed and request.verb in ("classify", "regress", "predict"):
            return self._run(request, body)
        if method == "GET" and request.parsed:
            if not request.model_name:
                raise ServingError("INVALID_ARGUMENT", "Missing model name in request.")
            if request.subresource == "metadata":
                found_version, servable = self.manager.servable(request.model_name, request.version, request.label)
                return metadata(request.model_name, found_version, servable)
            return {"model_version_status": self.manager.status(request.model_name, request.version)}
        raise ServingError("INVALID_ARGUMENT", f"Malformed request: {method} {path}")

    def _run(self, request: _Request, body: bytes) -> dict:
        def on_runtime(api: str, micros: float) -> None:
            self.metrics.record_runtime(model_name=request.model_name, api=api, micros=micros)

        doc = parse_json(body)
        lookup = (request.model_name, request.version, request.label)
        if request.verb == "predict":
            # The signature is read, then the model looked up, then the inputs (json_tensor.cc).
            signature_name(doc)
            _, servable = self.manager.servable(*lookup)
            return predict(servable, doc, on_runtime=on_runtime)
        examples = fill_examples(doc)  # classify and regress parse the whole body first
        _, servable = self.manager.servable(*lookup)
        run = classify if request.verb == "classify" else regress
        return run(servable, examples, doc, on_runtime=on_runtime)


def _read_body(handler) -> bytes:
    """The request body, chunked or not, gunzipped when Content-Encoding says gzip (TF Serving's
    net_http does both; a body that does not gunzip reads as empty)."""
    if "chunked" in (handler.headers.get("Transfer-Encoding") or "").lower():
        chunks = []
        while True:
            size = int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                break
            chunks.append(handler.rfile.read(size))
            handler.rfile.readline()
        body = b"".join(chunks)
    else:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
    if body and "gzip" in (handler.headers.get("Content-Encoding") or ""):
        try:
            body = gzip.decompress(body)
        except (OSError, EOFError, zlib.error):
            body = b""
    return body


def _handler_class(app: _App):
    class Handler(BaseHTTPRequestHandler):
        server_version = "modelgate-local-server"

        def _serve(self):
            try:
                body = _read_body(self)
            except ValueError:
                self.send_error(400)
                return
            reply = app.handle(self.command, self.path, body, self.headers)
            self.send_response(reply.status)
            for name, value in reply.headers:
                self.send_header(name, value)
            head = self.command == "HEAD"  # libevent sends no body for HEAD
            if not head:
                self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            if not head:
                self.wfile.write(reply.body)

        # libevent's allowed methods in TF Serving (net_http/server/internal/evhttp_server.cc).
        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _serve

        def log_message(self, format, *args):  # noqa: A002 - BaseHTTPRequestHandler's signature
            log.debug("%s - %s", self.address_string(), format % args)

    return Handler


class StartupError(Exception):
    """The server cannot start, with TF Serving's status text ("FAILED_PRECONDITION: …")."""


class LocalModelServer:
    """TF Serving's REST API on host:port for the models in a models.config.

    port=0 picks a free port (read .port or .url after construction). Version directories
    are polled every poll_seconds, as TF Serving's --file_system_poll_wait_seconds does. The
    models.config is re-read on reload(), and, with config_poll_seconds > 0, whenever the file
    changes, as --model_config_file_poll_wait_seconds does: the local runtime backend
    switches versions by rewriting the file, exactly as a ConfigMap update would.

    strict=True refuses what tensorflow_model_server refuses (the command line's default):
    a config whose version_labels point at a version that is not AVAILABLE, unless
    allow_version_labels_for_unavailable_models allows it (server_core.cc:498-533), at start
    and on every reload; and at start, a model whose latest version fails to load, after
    max_num_load_retries (start() raises StartupError; the command line exits 255, as main.cc
    does). In strict mode the REST API answers only once the initial load is over, as the real
    server starts its HTTP server after ServerCore::Create returns."""

    def __init__(
        self,
        config_path,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        metrics_path: str | None = METRICS_PATH,
        poll_seconds: float = 1.0,
        config_poll_seconds: float = 0.0,
        loader=load_savedmodel,
        strict: bool = False,
        allow_version_labels_for_unavailable_models: bool = False,
        max_num_load_retries: int = 0,
        load_retry_interval: float = 0.0,
        enable_cors_support: bool = False,
    ):
        self._config_source = config_path
        self.metrics = ServingMetrics()
        self.manager = ModelManager(
            loader,
            on_load=lambda path, ok: self.metrics.record_load(model_path=path, ok=ok),
            max_num_load_retries=max_num_load_retries,
            load_retry_interval=load_retry_interval,
        )
        self.strict = strict
        self.allow_unavailable_labels = allow_version_labels_for_unavailable_models
        self._poll_seconds = poll_seconds
        self._config_poll_seconds = config_poll_seconds
        self._config_seen = None
        self._reload_error = None
        self._stopped = threading.Event()
        self._threads: list[threading.Thread] = []
        self._handler = _handler_class(_App(self.manager, self.metrics, metrics_path, enable_cors_support))
        self._address = (host, port)
        # A fixed port in strict mode is bound after the initial load, so a client meanwhile
        # sees the connection refused, as with the real binary; port 0 must be known at once.
        self._httpd = None if strict and port else self._bind()
        self.host = host

    def _bind(self) -> ThreadingHTTPServer:
        httpd = ThreadingHTTPServer(self._address, self._handler)
        httpd.daemon_threads = True
        return httpd

    @property
    def port(self) -> int:
        return self._httpd.server_address[1] if self._httpd else self._address[1]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "LocalModelServer":
        try:
            self.reload(self._config_source)
        except ServingError as exc:
            raise StartupError(f"{exc.code}: {exc.message}") from exc
        if self.strict:
            self._await_initial_load()
        if self._httpd is None:
            self._httpd = self._bind()
        self._spawn(self._httpd.serve_forever, "rest-api")
        if self._poll_seconds and self._poll_seconds > 0:
            self._spawn(self._poll, "fs-poll")
        if self._config_poll_seconds > 0 and os.path.isfile(str(self._config_source)):
            self._spawn(self._poll_config, "config-poll")
        log.info("Exporting HTTP/REST API at:%s:%s ...", self.host, self.port)
        return self

    def _await_initial_load(self) -> None:
        """Wait, as ServerCore::Create does, until each model's latest version is AVAILABLE or
        has failed for good; any failure is the StartupError the real binary exits with
        ("N servable(s) did not become available", server_core_test.cc ErroringModel)."""
        while True:
            states = self.manager.latest_states()
            if all(s is not None and s.state in (AVAILABLE, END) for _, s in states.values()):
                break
            if self._stopped.wait(
                0.1 if all(v is not None for v, _ in states.values()) else max(self._poll_seconds or 0, 0.1)
            ):
                return
            self.manager.refresh()  # a model with no version yet waits for one, as TF Serving does
        failed = [(name, version, status) for name, (version, status) in states.items() if status.state != AVAILABLE]
        if failed:
            parts = "".join(
                f"{{{{name: {name} version: {version}}} due to error: {status.error_code}: {status.error_message}}}, "
                for name, version, status in failed
            )
            raise StartupError(f"UNKNOWN: {len(failed)} servable(s) did not become available: {{{parts}}}")

    def _spawn(self, target, name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _poll(self) -> None:
        while not self._stopped.wait(self._poll_seconds):
            try:
                self.manager.refresh()
            except Exception:  # a flaky disk must not stop the poller
                log.exception("polling model directories failed")

    def _poll_config(self) -> None:
        path = str(self._config_source)
        while not self._stopped.wait(self._config_poll_seconds):
            try:
                text = Path(path).read_text()
                if text != self._config_seen:
                    self.reload(path)
                    self._reload_error = None
            except Exception as exc:  # a refused config keeps the last good one serving, as TF Serving does
                # server.cc's PollFilesystemAndReloadConfig logs the error and tries again on the
                # next poll; logged here once per distinct error.
                error = f"{exc.code}: {exc.message}" if isinstance(exc, ServingError) else str(exc)
                if error != self._reload_error:
                    log.error("PollFilesystemAndReloadConfig failed to ReloadConfig: %s", error)
                    self._reload_error = error

    def reload(self, config_text_or_path) -> None:
        """Serve what a new models.config asks for: new versions load, then the versions it no
        longer names are unloaded (END), so there is always something serving. In strict mode
        a config TF Serving would refuse raises ServingError and changes nothing."""
        text, source = _config_text(config_text_or_path)
        configs = parse_models_config(text, source)
        if self.strict:
            self.manager.check_labels(configs, allow_unavailable=self.allow_unavailable_labels)
        self.manager.apply(configs)
        self._config_seen = text
        self._config_source = config_text_or_path

    def wait_until_available(self, name: str, version: int, timeout: float = 60.0) -> dict:
        """Block until the version is AVAILABLE; a version that fails to load raises at once."""
        status = self.manager.wait_for(name, int(version), {AVAILABLE, END}, timeout)
        if status.state != AVAILABLE:
            raise RuntimeError(
                f"{name} version {version} did not load: {status.error_code}: {status.error_message or 'unloaded'}"
            )
        return status.as_json(int(version))

    def wait_for_state(self, name: str, version: int, states, timeout: float = 60.0) -> dict:
        return self.manager.wait_for(name, int(version), set(states), timeout).as_json(int(version))

    def stop(self) -> None:
        self._stopped.set()
        if self._httpd is not None:
            if any(t.name == "rest-api" for t in self._threads):
                self._httpd.shutdown()
            self._httpd.server_close()
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


# --- command line, with tensorflow_model_server's flags ---


def _model_source(args) -> str:
    if args.model_config_file:  # main.cc: "(If used, --model_name, --model_base_path are ignored.)"
        return args.model_config_file
    name = args.model_name or "default"
    return (
        f"model_config_list {{ config {{ name: {json.dumps(name)} "
        f'base_path: {json.dumps(args.model_base_path)} model_platform: "tensorflow" }} }}'
    )


def _metrics_path(args) -> str | None:
    if not args.monitoring_config_file:
        return None  # as tensorflow_model_server: no monitoring config, no metrics endpoint
    path = args.monitoring_config_file
    return parse_monitoring_config(Path(path).read_text(), path)


def _fail_to_start(error: str) -> None:
    # main.cc:321-325: the status on stdout, exit status -1 (255).
    print(f"Failed to start server. Error: {error}", flush=True)  # noqa: T201 - the real binary's own output
    sys.exit(255)


def main(argv=None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = tfserving_flags.parse_or_exit(
        sys.argv[1:] if argv is None else list(argv), program="python -m deployer.local_server"
    )
    if args.version:
        print("TensorFlow ModelServer: development stand-in (deployer.local_server)", flush=True)  # noqa: T201 - the real binary's own output
        return
    if not args.model_config_file and not args.model_base_path:
        _fail_to_start(
            "INVALID_ARGUMENT: Both server_options.model_base_path and server_options.model_config_file are empty!"
        )
    log.info("gRPC is not served by the development model server; --port=%s is ignored.", args.port)
    retry_micros = args.load_retry_interval_micros
    server = LocalModelServer(
        _model_source(args),
        host=args.rest_api_host,
        port=args.rest_api_port,
        metrics_path=_metrics_path(args),
        poll_seconds=args.file_system_poll_wait_seconds,
        config_poll_seconds=args.model_config_file_poll_wait_seconds,
        strict=args.strict,
        allow_version_labels_for_unavailable_models=args.allow_version_labels_for_unavailable_models,
        max_num_load_retries=args.max_num_load_retries,
        load_retry_interval=max(retry_micros, 0) / 1e6,
        enable_cors_support=args.rest_api_enable_cors_support,
    )
    # Kubernetes and the tests stop the server with SIGTERM: exit through the finally below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server.start()
    except (StartupError, ValueError, OSError) as exc:
        server.stop()
        _fail_to_start(str(exc))
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
