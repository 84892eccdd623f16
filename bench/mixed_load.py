"""Mixed API load: N clients for D seconds against a running Modelgate, counting answers by status.

    python -m bench.mixed_load --base-url http://127.0.0.1:8000 --token ENGINEER_TOKEN \\
        --approver-token APPROVER_TOKEN --source models:/m-... --clients 32 --duration 120

Each client is a thread with its own keep-alive connection, picking at random (weights in
ACTIONS): reads (model list and search, version search, model and version detail,
deployments, audit, promotions, environments), writes (create a model, register a version
from ``--source``, PATCH tags on a model or a version) as the engineer, promotion requests
of its own versions to ``--environment`` as the engineer, and approvals of them as the
approver. 4xx answers (409 conflicts, 429 throttling) are counted and reported; any 5xx or a
broken connection is a failure: the exit status is 1 and the first few are printed.

API_RATE_LIMIT throttles per token (600/minute by default): raise it on the server, or
every client sharing a token soon gets 429s. Stdlib only (http.client, threads)."""

import argparse
import http.client
import json
import random
import sys
import threading
import time
import urllib.parse
import uuid
from collections import Counter, defaultdict

ACTIONS = {  # weight out of 100
    "read": 55,
    "create_model": 5,
    "register_version": 10,
    "patch_tags": 10,
    "request_promotion": 10,
    "approve": 10,
}
READS = [
    "/api/v1/models/?q=load",
    "/api/v1/models/?tag=load",
    "/api/v1/versions/?tag=client",
    "/api/v1/deployments/",
    "/api/v1/audit/",
    "/api/v1/promotions/?state=pending_approval",
    "/api/v1/environments/",
    "{model}",
    "{version}",
]


class Connection:
    """One keep-alive HTTP connection; a request on a reused connection the server closed
    meanwhile (an idle keep-alive timeout) is sent again once on a new one."""

    def __init__(self, base_url: str, timeout: float):
        url = urllib.parse.urlsplit(base_url)
        self.host, self.port, self.timeout = url.hostname, url.port or 80, timeout
        self.conn = None

    def request(
        self, method: str, path: str, token: str, body: dict | None = None, headers: dict | None = None
    ) -> tuple[int, bytes]:
        payload = json.dumps(body).encode() if body is not None else None
        headers = {
            "Authorization": f"Bearer {token}",
            "Accept": "application/json",
            **(headers or {}),
            **({"Content-Type": "application/json"} if payload is not None else {}),
        }
        for attempt in (0, 1):
            reused = self.conn is not None
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self.conn.request(method, path, body=payload, headers=headers)
                response = self.conn.getresponse()
                data = response.read()
                if response.getheader("Connection", "").lower() == "close":
                    self.close()
                return response.status, data
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.close()
                if attempt or not reused:
                    raise
        raise AssertionError("unreachable")

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class Tally:
    def __init__(self):
        self.lock = threading.Lock()
        self.statuses: Counter = Counter()
        self.by_action: dict[str, Counter] = defaultdict(Counter)
        self.seconds: list[float] = []
        self.failures: list[str] = []
        # 503s whose body says MLflow could not answer: Modelgate's own, correct answer to an
        # overloaded or unreachable MLflow (counted among the failures, and on their own).
        self.mlflow_unavailable = 0
        self.refusals: dict[str, str] = {}  # the first 4xx of each action and status, to say why

    def add(self, action: str, method: str, path: str, status: int, seconds: float, body: bytes = b""):
        with self.lock:
            self.statuses[status] += 1
            self.by_action[action][status] += 1
            self.seconds.append(seconds)
            if status == 503 and b"MLflow" in body:
                self.mlflow_unavailable += 1
            if (status >= 500 or status < 100) and len(self.failures) < 20:
                self.failures.append(f"{method} {path} -> {status}: {body[:300]!r}")
            elif 400 <= status < 500:
                self.refusals.setdefault(f"{action} {status}", f"{method} {path}: {body[:300]!r}")


class Client(threading.Thread):
    def __init__(self, index: int, args, tally: Tally, stop_at: float, run_id: str):
        super().__init__(name=f"load-{index}", daemon=True)
        self.index, self.args, self.tally, self.stop_at, self.run_id = index, args, tally, stop_at, run_id
        self.http = Connection(args.base_url, args.timeout)
        self.random = random.Random(f"{run_id}-{index}")
        self.models: dict[str, list[int]] = {}  # this client's models and their versions
        self.pending: list[int] = []  # its promotion requests waiting for an approval
        self.n = 0

    def call(
        self,
        action: str,
        method: str,
        path: str,
        body: dict | None = None,
        *,
        approver: bool = False,
        headers: dict | None = None,
    ):
        token = self.args.approver_token if approver else self.args.token
        started = time.monotonic()
        try:
            status, data = self.http.request(method, path, token, body, headers)
        except (OSError, http.client.HTTPException) as exc:
            self.http.close()
            status, data = 0, repr(exc).encode()  # 0: no answer (counted as a failure)
        self.tally.add(action, method, path, status, time.monotonic() - started, data)
        try:
            return status, json.loads(data) if data and 200 <= status < 300 else None
        except ValueError:
            return status, None

    def run(self):
        actions, weights = zip(*ACTIONS.items(), strict=True)
        try:
            while time.monotonic() < self.stop_at:
                self.n += 1
                getattr(self, self.random.choices(actions, weights)[0])()
        finally:
            self.http.close()

    def _own_version(self) -> tuple[str, int] | None:
        candidates = [(m, v) for m, versions in self.models.items() for v in versions]
        return self.random.choice(candidates) if candidates else None

    def read(self):
        path = self.random.choice(READS)
        own = self._own_version()
        if path == "{model}":
            path = f"/api/v1/models/{urllib.parse.quote(own[0] if own else self.args.model)}/"
        elif path == "{version}":
            name, version = own or (self.args.model, 1)
            path = f"/api/v1/models/{urllib.parse.quote(name)}/versions/{version}/"
        self.call("read", "GET", path)

    def create_model(self):
        name = f"load-{self.run_id}-{self.index}-{self.n}"
        status, _ = self.call(
            "create_model",
            "POST",
            "/api/v1/models/",
            {"name": name, "description": "mixed load", "tags": {"load": self.run_id}},
        )
        if status == 201:
            self.models[name] = []

    def register_version(self):
        if not self.models:
            return self.create_model()
        name = self.random.choice(list(self.models))
        status, body = self.call(
            "register_version",
            "POST",
            f"/api/v1/models/{urllib.parse.quote(name)}/versions/",
            {"source": self.args.source, "tags": {"client": str(self.index)}},
            headers={"Idempotency-Key": uuid.uuid4().hex},
        )
        if status == 201:
            self.models[name].append(body["version"])

    def patch_tags(self):
        own = self._own_version()
        if own is None:
            return self.register_version()
        name, version = own
        path = f"/api/v1/models/{urllib.parse.quote(name)}/" + (f"versions/{version}/" if self.n % 2 else "")
        self.call("patch_tags", "PATCH", path, {"tags": {"touched": str(self.n), "load": self.run_id}})

    def request_promotion(self):
        own = self._own_version()
        if own is None:
            return self.register_version()
        status, body = self.call(
            "request_promotion",
            "POST",
            "/api/v1/promotions/",
            {"model": own[0], "version": own[1], "environment": self.args.environment, "justification": "mixed load"},
        )
        if status == 201:
            self.pending.append(body["id"])

    def approve(self):
        if not self.pending:
            return self.request_promotion()
        request_id = self.pending.pop(0)
        self.call("approve", "POST", f"/api/v1/promotions/{request_id}/approve/", {"comment": "load"}, approver=True)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def run(args) -> dict:
    tally, run_id = Tally(), uuid.uuid4().hex[:6]
    started = time.monotonic()
    clients = [Client(i, args, tally, started + args.duration, run_id) for i in range(args.clients)]
    for client in clients:
        client.start()
    for client in clients:
        client.join(args.duration + 2 * args.timeout + 30)
    elapsed = time.monotonic() - started
    total = sum(tally.statuses.values())
    return {
        "clients": args.clients,
        "seconds": round(elapsed, 1),
        "requests": total,
        "requests_per_second": round(total / elapsed, 1) if elapsed else 0.0,
        "statuses": {str(k): v for k, v in sorted(tally.statuses.items())},
        "by_action": {a: {str(k): v for k, v in sorted(c.items())} for a, c in sorted(tally.by_action.items())},
        "p50_ms": round(percentile(tally.seconds, 0.50) * 1000, 1),
        "p95_ms": round(percentile(tally.seconds, 0.95) * 1000, 1),
        "p99_ms": round(percentile(tally.seconds, 0.99) * 1000, 1),
        "failures": sum(v for k, v in tally.statuses.items() if k >= 500 or k < 100),
        "mlflow_unavailable": tally.mlflow_unavailable,
        "first_failures": tally.failures,
        "first_refusals": tally.refusals,
        "still_running": sum(c.is_alive() for c in clients),
    }


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.mixed_load", description=__doc__.split("\n\n")[0])
    p.add_argument("--base-url", required=True)
    p.add_argument("--token", required=True, help="an engineer's API token (reads, writes, promotion requests)")
    p.add_argument("--approver-token", required=True, help="an approver's API token (approvals)")
    p.add_argument("--source", required=True, help="a version source the server allows (models:/m-..., runs:/...)")
    p.add_argument("--model", default="iris", help="an existing model, read before a client has its own")
    p.add_argument(
        "--environment",
        default="staging",
        help="the environment promotions are requested to: one whose gates let a new version through "
        "(the first environment, no metric thresholds), or every request is blocked and no "
        "approval is made",
    )
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--duration", type=float, default=120, help="seconds")
    p.add_argument("--timeout", type=float, default=60, help="seconds a request may take")
    return p


def main(argv=None) -> int:
    summary = run(parser().parse_args(argv))
    print(json.dumps(summary, indent=2))
    return 1 if summary["failures"] or summary["still_running"] else 0


if __name__ == "__main__":
    sys.exit(main())
