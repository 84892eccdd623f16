"""HTTP: the REST paths, bearer-token auth, watch streams, the pod proxy and the service proxy.

Paths are split before they are percent-decoded, as the real server's router does, so a
client that encodes `/` and `:` in a proxy path (the Python client does) reaches the same place
as one that does not.
"""

import json
import logging
import time
from http.server import BaseHTTPRequestHandler
from typing import NamedTuple
from urllib.parse import parse_qs, unquote, urlsplit

from . import dataplane, resources
from .status import ApiError, status_object
from .store import Expired

log = logging.getLogger(__name__)

APPLY = "application/apply-patch+yaml"
_PATCH_TYPES = (
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+cbor",
)
_PUBLIC = {"version", "healthz", "readyz", "livez"}  # open to anyone, as system:public-info-viewer allows
_PROXY_VERBS = {
    "GET": "get",
    "HEAD": "get",
    "POST": "create",
    "PUT": "update",
    "PATCH": "patch",
    "DELETE": "delete",
    "OPTIONS": "get",
}


class Call(NamedTuple):
    """One request, as RBAC sees it."""

    method: str
    path: str
    group_version: str  # "v1", "apps/v1"...
    resource: str  # "deployments"
    subresource: str  # "", "status", "proxy"
    verb: str  # get, list, watch, create, update, patch, delete, deletecollection


class _Route(NamedTuple):
    resource: object | None
    namespace: str | None
    name: str | None
    subresource: str
    rest: str  # the path after /proxy


def _route(path: str) -> tuple[str, str, _Route | None]:
    """(group, version, route); route None for a path that names no resource."""
    parts = [unquote(p) for p in path.strip("/").split("/")] if path.strip("/") else []
    if parts[:2] == ["api", "v1"]:
        group, version, rest = "", "v1", parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return "", "", None
    namespace = None
    if rest[:1] == ["namespaces"] and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    if not rest:
        return group, version, None
    resource = resources.by_path(group, version, rest[0])
    name = rest[1] if len(rest) > 1 else None
    sub = rest[2] if len(rest) > 2 else ""
    return group, version, _Route(resource, namespace, name, sub, "/".join(rest[3:]))


def _verb(method: str, route: _Route, query: dict) -> str:
    if route.subresource == "proxy":
        return _PROXY_VERBS.get(method, method.lower())
    if method == "GET":
        if route.name is not None:
            return "get"
        return "watch" if query.get("watch") in ("true", "1") else "list"
    if method == "DELETE" and route.name is None:
        return "deletecollection"
    return {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(method, method.lower())


def handler_class(server):
    """The request handler bound to one FakeKubeApiServer."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # chunked watch streams and keep-alive, as clients expect
        server_version = "fake-kube-apiserver"
        # Go's TCP connections have TCP_NODELAY on unless told otherwise (net/tcpsock.go,
        # TCPConn.SetNoDelay: "The default is true (no delay)"), so kube-apiserver's replies are
        # not held back by Nagle's algorithm; here headers and body are two writes, and without
        # it every kept-alive request waited 40 ms for the client's delayed ACK.
        disable_nagle_algorithm = True

        def setup(self):
            super().setup()
            server.connection_opened(self.connection)

        def finish(self):
            server.connection_closed(self.connection)
            super().finish()

        def _handle(self) -> None:
            split = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            group, version, route = _route(split.path)
            if route is not None and route.resource is not None and not server.serves(route.resource):
                # No CRD for it: kube-apiserver's CRD handler finds none and passes the request on
                # (apiextensions-apiserver/pkg/apiserver/customresource_handler.go:242-252 at commit
                # 37c19ef), and the handler at the end of the chain answers a bare NotFound Status
                # (apiserver/pkg/util/notfoundhandler/not_found_handler.go:71-79 at commit 20cc31b).
                route = route._replace(resource=None)
            server.api.warnings.messages = []
            call = None
            if route is not None:
                call = Call(
                    self.command,
                    split.path,
                    f"{group}/{version}" if group else version,
                    route.resource.plural if route.resource else "",
                    route.subresource,
                    _verb(self.command, route, query),
                )
                server.record(call)
            try:
                if split.path.strip("/") not in _PUBLIC:
                    self._authenticate()
                    server.take_fault(call)
                if route is None or route.resource is None:
                    self._public(split.path.strip("/"))
                    return
                self._dispatch(route, query, body, split.query)
            except ApiError as error:
                self._json(error.code, error.status(), retry_after=error.retry_after)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client went away mid-answer (a closed watch)
            except Exception as exc:  # answer like the real server's panic recovery, and log it
                log.exception("fake API server failed on %s %s", self.command, self.path)
                self._json(500, status_object(500, "InternalError", f"Internal error occurred: {exc}"))

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle

        def _authenticate(self) -> None:
            scheme, _, token = (self.headers.get("Authorization") or "").partition(" ")
            if scheme.lower() != "bearer" or not server.token_matches(token.strip()):
                raise ApiError(401, "Unauthorized")

        def _public(self, path: str) -> None:
            if path == "version":
                self._json(200, {"major": "1", "minor": "33", "gitVersion": "v1.33.0-fake", "platform": "linux/amd64"})
            elif path in _PUBLIC:
                self._send(200, "text/plain; charset=utf-8", b"ok")
            else:
                raise ApiError(404, "the server could not find the requested resource")

        def _dispatch(self, route: _Route, query: dict, body: bytes, raw_query: str) -> None:
            resource, namespace, name = route.resource, route.namespace, route.name
            api = server.api
            if route.subresource == "proxy" and resource.plural == "services":
                self._service_proxy(namespace, name, route.rest, body, raw_query)
                return
            if route.subresource == "proxy":
                self._proxy(namespace, name, route.rest, body, raw_query)
                return
            if route.subresource == "status" and self.command == "PUT" and name is not None and namespace:
                obj = api.update_status(
                    resource, namespace, name, _json_body(body), manager=query.get("fieldManager", "")
                )
                self._json(200, obj)
                return
            if route.subresource not in ("", "status") or (route.subresource and self.command != "GET"):
                raise ApiError(404, "the server could not find the requested resource")
            if namespace is None and (name is not None or self.command != "GET"):
                raise ApiError(404, "the server could not find the requested resource")
            if self.command == "GET" and name is None:
                if query.get("watch") in ("true", "1"):
                    self._watch(resource, namespace, query)
                else:
                    self._json(
                        200,
                        api.list(
                            resource,
                            namespace,
                            label_selector=query.get("labelSelector"),
                            field_selector=query.get("fieldSelector"),
                        ),
                    )
            elif self.command == "GET":
                self._json(200, api.get(resource, namespace, name))
            elif self.command == "POST" and name is None:
                obj = api.create(
                    resource,
                    namespace,
                    _json_body(body),
                    manager=query.get("fieldManager", ""),
                    dry_run=query.get("dryRun") == "All",
                )
                self._json(201, obj)
            elif self.command == "PUT" and name is not None:
                self._json(
                    200,
                    api.update(
                        resource,
                        namespace,
                        name,
                        _json_body(body),
                        manager=query.get("fieldManager", ""),
                        dry_run=query.get("dryRun") == "All",
                    ),
                )
            elif self.command == "PATCH" and name is not None:
                self._patch(resource, namespace, name, query, body)
            elif self.command == "DELETE" and name is not None:
                self._json(200, api.delete(resource, namespace, name))
            else:
                raise ApiError(405, "the server does not allow this method on the requested resource")

        def _patch(self, resource, namespace: str, name: str, query: dict, body: bytes) -> None:
            content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            if content_type != APPLY:
                known = "" if content_type in _PATCH_TYPES else "the body of the request was in an unknown format - "
                raise ApiError(
                    415,
                    f"{known}accepted media types include: {APPLY} (the fake API server implements "
                    "server-side apply only)",
                )
            obj, created = server.api.apply(
                resource,
                namespace,
                name,
                _json_body(body),
                manager=query.get("fieldManager"),
                force=query.get("force") == "true",
                dry_run=query.get("dryRun") == "All",
            )
            self._json(201 if created else 200, obj)

        # --- watch ---

        def _watch(self, resource, namespace: str | None, query: dict) -> None:
            matches = server.api.matcher(resource, query.get("labelSelector"), query.get("fieldSelector"))
            since = query.get("resourceVersion") or "0"
            if not since.isdigit():
                raise ApiError(400, f'invalid resource version "{since}"')
            timeout = float(query.get("timeoutSeconds") or server.watch_timeout)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                self._stream(resource, namespace, matches, int(since), time.monotonic() + timeout)
            except Expired as exc:
                self._event("ERROR", status_object(410, "Expired", str(exc)))
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

        def _stream(self, resource, namespace, matches, since: int, deadline: float) -> None:
            store = server.store
            if server.take_watch_410():
                raise Expired(since, store.resource_version)
            if since == 0:  # no resourceVersion: the current state first, as synthetic ADDED events
                with store.lock:
                    current = store.list(resource, namespace, matches)
                    since = store.resource_version
                for obj in current:
                    self._event("ADDED", obj)
            while not store.stopped and (remaining := deadline - time.monotonic()) > 0:
                for event in store.events_after(since, min(remaining, 0.5)):
                    since = event.rv
                    if event.plural == resource.plural and namespace in (None, event.namespace) and matches(event.obj):
                        self._event(event.type, event.obj)

        def _event(self, kind: str, obj: dict) -> None:
            data = json.dumps({"type": kind, "object": obj}).encode() + b"\n"
            self.wfile.write(f"{len(data):X}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        # --- pod proxy ---

        def _proxy(self, namespace: str, target: str, path: str, body: bytes, raw_query: str) -> None:
            parts = target.split(":")
            name, port = (parts[0], None) if len(parts) == 1 else (parts[-2], parts[-1])  # [scheme:]name[:port]
            pod = server.api.get(resources.by_name("pods"), namespace, name)
            port_number = _pod_port(pod, port)
            if port_number is None:
                ip = (pod.get("status") or {}).get("podIP", "")
                raise ApiError(503, f"error trying to reach service: dial tcp {ip}:{port}: connect: connection refused")
            self._send(*dataplane.forward(server, pod, port_number, self.command, path, body, self._ctype(), raw_query))

        def _service_proxy(self, namespace: str, target: str, path: str, body: bytes, raw_query: str) -> None:
            """One request to one of the Service's ready endpoints, chosen at random (dataplane.py)."""
            parts = target.split(":")
            name, port = (parts[0], None) if len(parts) == 1 else (parts[-2], parts[-1])  # [scheme:]name[:port]
            pod, port_number = dataplane.pick_endpoint(server, namespace, name, port, server.chooser)
            self._send(*dataplane.forward(server, pod, port_number, self.command, path, body, self._ctype(), raw_query))

        def _ctype(self) -> dict:
            return {"Content-Type": self.headers["Content-Type"]} if self.headers.get("Content-Type") else {}

        # --- answers ---

        def _json(self, code: int, payload: dict, *, retry_after: bool = False) -> None:
            self._send(
                code, "application/json", json.dumps(payload).encode(), {"Retry-After": "1"} if retry_after else None
            )

        def _send(self, code: int, content_type: str, payload: bytes, extra: dict | None = None) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            for key, value in (extra or {}).items():
                self.send_header(key, value)
            for message in dict.fromkeys(getattr(server.api.warnings, "messages", None) or []):
                self.send_header("Warning", _warning(message))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        def log_message(self, format, *args):  # noqa: A002 - BaseHTTPRequestHandler's signature
            log.debug("%s - %s", self.address_string(), format % args)

    return Handler


def _warning(message: str) -> str:
    """A Warning header as kube-apiserver writes one (apimachinery/pkg/util/net/http.go
    NewWarningHeader): code 299, agent "-", the text quoted with \\ and \" escaped."""
    escaped = message.replace("\\", "\\\\").replace('"', '\\"')
    return f'299 - "{escaped}"'


def _json_body(body: bytes):
    try:
        return json.loads(body or b"null")
    except ValueError as exc:
        # The real server reads YAML too; JSON is YAML, and every client here sends JSON.
        raise ApiError(400, f"the fake API server reads JSON bodies (JSON is valid YAML): {exc}") from None


def _pod_port(pod: dict, port: str | None) -> int | None:
    """A proxy port: a number, a container port's name, or (none given) the first declared port."""
    declared = [p for c in pod["spec"].get("containers") or [] for p in c.get("ports") or []]
    if port is None:
        return declared[0]["containerPort"] if declared else None
    if port.isdigit():
        return int(port)
    return next((p["containerPort"] for p in declared if p.get("name") == port), None)
