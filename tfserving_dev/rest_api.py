"""TF Serving's REST API: routes, error bodies and status codes (model_servers/http_server.cc,
http_rest_api_handler.cc), with the metrics recorded where TF Serving records them."""

import gzip
import logging
import re
import time
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from urllib.parse import unquote, urlsplit

from tfserving_dev.errors import ServingError
from tfserving_dev.manager import ModelManager
from tfserving_dev.metrics import ServingMetrics
from tfserving_dev.tensors import classify, dumps, fill_examples, metadata, parse_json, predict, regress, signature_name

log = logging.getLogger(__name__)


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


class App:
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


def handler_class(app: App):
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
