"""`make bench` / `make bench-quick`: measure Modelgate next to MLflow's own server.

    python -m bench.run --scale quick|full [--only search,pages,...] [--keep-data]

Every benchmark uses its own PostgreSQL databases (modelgate_bench, mlflow_bench) and Redis
db 9; they are dropped and recreated at the start. Results go to bench/results/.
"""

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from bench.cpu_watch import OUTSIDE_LIMIT_CORES, CpuWatch, process_cpu_seconds

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
VENV_BIN = Path(sys.executable).parent

SCALES = {
    # models, versions per model, seconds per load level, page timings, registrations, approvals
    "quick": dict(
        rounds=2,
        models=100,
        versions=20,
        load_seconds=3,
        page_runs=15,
        registrations=30,
        approvals=15,
        scrapes=5,
        lives=2,
        metrics_endpoints=(100,),
    ),
    "full": dict(
        rounds=3,
        models=1000,
        versions=100,
        load_seconds=10,
        page_runs=30,
        registrations=100,
        approvals=40,
        scrapes=10,
        lives=4,
        metrics_endpoints=(100, 1000),
    ),
}
CONCURRENCY = (1, 8, 32)
# gunicorn's workers as docs/operations.md recommends for 2 cores; BENCH_WEB_ARGS="-w 2" measures
# plain sync workers instead.
WEB_ARGS = os.environ.get("BENCH_WEB_ARGS", "--workers 2 --threads 4").split()
WEB = "web (gunicorn " + " ".join(WEB_ARGS) + ")"
PG = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432")
MG_DB, MLFLOW_DB = os.environ.get("BENCH_MG_DB", "modelgate_bench"), os.environ.get("BENCH_MLFLOW_DB", "mlflow_bench")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/9")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


MG_PORT, MLFLOW_PORT = free_port(), free_port()
# SQLAlchemy 2.1 maps postgresql:// to psycopg 3; the venv has psycopg2.
MLFLOW_URI = f"{PG.replace('postgresql://', 'postgresql+psycopg2://')}/{MLFLOW_DB}"
TARGETS = {
    "search_throughput_ratio_c8": 3.0,  # Modelgate rps / MLflow rps at concurrency 8, at least
    "search_p99_ms_c32": 50.0,  # Modelgate p99 at concurrency 32, under
    "search_cpu_ms": 3.0,  # web-server CPU per search request (gunicorn tree), at most
    "page_server_ms": 100.0,  # list pages' median server time, under
    "pickup_p95_ms": 200.0,  # approval -> worker pick-up p95, under
    "register_per_second": 50.0,  # registrations through the API, one client, at least
    "register_p99_ms": 150.0,  # their p99, at most
    "scrape_cpu_ms_100": 50.0,  # CPU per metrics cycle over 100 endpoints, at most
    "scrape_core_share_1000": 0.10,  # share of one core, a cycle every 10 s over 1,000 endpoints, under
}


def bench_env() -> dict:
    env = {
        "DATABASE_URL": f"{PG.replace('postgresql://', 'postgres://')}/{MG_DB}",
        "DATABASE_CONN_MAX_AGE": "600",
        "MLFLOW_TRACKING_URI": MLFLOW_URI,
        "CELERY_BROKER_URL": REDIS_URL,
        "CELERY_DEFAULT_QUEUE": "bench",
        "DEPLOY_QUEUE": "bench-deploy",
        "BENCH_REDIS_URL": REDIS_URL,
        # As in production (docker-compose.yml): throttle counters and the token cache generation
        # in Redis, not in database rows.
        "CACHE_URL": REDIS_URL,
        "DEBUG": "false",
        "SECRET_KEY": "bench-only-not-a-secret-" + "x" * 40,
        "ALLOWED_HOSTS": "127.0.0.1,localhost,testserver",
        "MODELGATE_VAR_DIR": str(BENCH / "var"),
        "MODELGATE_DEMO": "false",
        "REGISTRY_SYNC_INSPECT_LIMIT": "1",
        "MLFLOW_ARTIFACT_ROOT": "file:///tmp/bench-artifacts",
        "MODELGATE_ALLOWED_SOURCE_ROOTS": "file:///tmp/bench-artifacts",
        "LOG_LEVEL": "WARNING",
        "DJANGO_SETTINGS_MODULE": "console.settings",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        # The load clients send thousands of requests a minute with one token: the throttle
        # still counts each one (its cost is measured), but never refuses them.
        "API_RATE_LIMIT": "10000000/minute",
        # Pages are timed in this process, which has not run collectstatic: plain static names.
        "STATIC_MANIFEST": "false",
    }
    return env


os.environ.update(bench_env())
sys.path.insert(0, str(ROOT))


def pct(values, p):
    if not values:
        return None
    s = sorted(values)
    k = (len(s) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def summary_ms(seconds: list[float]) -> dict:
    ms = [s * 1000 for s in seconds]
    return {
        "n": len(ms),
        "p50_ms": r(pct(ms, 50)),
        "p95_ms": r(pct(ms, 95)),
        "p99_ms": r(pct(ms, 99)),
        "max_ms": r(max(ms) if ms else None),
    }


def r(x, nd=2):
    return None if x is None else round(x, nd)


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --- machine -------------------------------------------------------------------


def machine() -> dict:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kb = int(
            next(l for l in Path("/proc/meminfo").read_text().splitlines() if l.startswith("MemTotal")).split()[1]
        )
    except (OSError, StopIteration):
        mem_kb = 0
    import django
    import mlflow
    import psycopg2

    conn = psycopg2.connect(f"{PG}/postgres")
    with conn.cursor() as cur:
        cur.execute("SHOW server_version")
        pg = cur.fetchone()[0]
    conn.close()
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        commit = ""
    return {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "django": django.get_version(),
        "mlflow": mlflow.__version__,
        "postgresql": pg,
        "commit": commit,
        # Other work on the machine skews every figure: compare runs with similar load.
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


# --- processes -----------------------------------------------------------------


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    import urllib.request

    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server for {url} exited with {proc.returncode}; see bench/var/*.log")
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except Exception:
            time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer within {timeout}s")


def start(cmd: list[str], name: str) -> subprocess.Popen:
    logf = open(BENCH / "var" / f"{name}.log", "w")
    return subprocess.Popen(
        cmd, cwd=ROOT, env={**os.environ}, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True
    )


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def stop_model_servers() -> None:
    """Stop the model servers the bench's rollouts started (the local backend leaves them running,
    by design): each one by the pid its deployment directory records."""
    root = BENCH / "var" / "deployments"
    if not root.is_dir():
        return
    from deployer.backends.local import LocalBackend

    for d in root.iterdir():
        if d.is_dir():
            LocalBackend(root=root, name=d.name, port=0).stop()


def tree_hwm_mb(pid: int) -> dict:
    """Peak resident memory (VmHWM) of a process and its children, in MB."""
    out = {}
    pids = [pid]
    try:
        kids = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
        pids += [int(k) for k in kids]
    except OSError:
        pass
    for p in pids:
        try:
            status = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        hwm = next((int(l.split()[1]) for l in status.splitlines() if l.startswith("VmHWM")), 0)
        out[str(p) if p != pid else "main"] = round(hwm / 1024, 1)
    return out


# --- load client ---------------------------------------------------------------


async def _load(url: str, headers: dict, concurrency: int, seconds: float, body: dict | None = None) -> dict:
    """GET ``url`` (or POST ``body`` as JSON) from ``concurrency`` clients for ``seconds``."""
    import aiohttp

    latencies, errors = [], 0
    stop_at = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        payload = None if body is None else json.dumps(body)

        def call():
            if payload is None:
                return session.get(url)
            return session.post(url, data=payload, headers={"Content-Type": "application/json"})

        async def worker():
            nonlocal errors
            while time.perf_counter() < stop_at:
                t = time.perf_counter()
                try:
                    async with call() as resp:
                        await resp.read()
                        ok = resp.status == 200
                except aiohttp.ClientError:
                    ok = False
                if ok:
                    latencies.append(time.perf_counter() - t)
                else:
                    errors += 1

        # warm every connection first
        async with call() as resp:
            body = await resp.read()
            if resp.status != 200:
                raise RuntimeError(f"{url}: HTTP {resp.status}: {body[:300]!r}")
        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    return {
        "concurrency": concurrency,
        "requests": len(latencies),
        "errors": errors,
        "rps": r(len(latencies) / elapsed, 1),
        **summary_ms(latencies),
    }


def load(url, headers, concurrency, seconds, body=None):
    return asyncio.run(_load(url, headers, concurrency, seconds, body))


# --- benchmarks ----------------------------------------------------------------


def setup_modelgate() -> dict:
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from console.accounts.roles import ADMIN, APPROVER, ENGINEER, VIEWER, ensure_roles
    from console.accounts.services import token_create

    ensure_roles()
    users, tokens = {}, {}
    for role, name in ((VIEWER, "viewer"), (ENGINEER, "engineer"), (APPROVER, "approver"), (ADMIN, "admin")):
        user = get_user_model().objects.create_user(username=f"bench-{name}", password="bench-" + name * 2)
        user.groups.add(Group.objects.get(name=role))
        users[name] = user
        tokens[name] = token_create(user=user, name="bench").raw
    return {"users": users, "tokens": tokens}


def bench_generate(scale: dict) -> dict:
    from bench import generate

    generate.recreate_database(f"{PG}/postgres", MLFLOW_DB)
    generate.recreate_database(f"{PG}/postgres", MG_DB)
    t = time.perf_counter()
    generate.mlflow_schema(MLFLOW_URI, "file:///tmp/bench-artifacts")
    schema_s = time.perf_counter() - t
    filled = generate.mlflow_fill(
        f"{PG.replace('postgresql://', 'postgres://')}/{MLFLOW_DB}", models=scale["models"], versions=scale["versions"]
    )
    log(f"MLflow store filled in {filled['seconds']} s: {filled['rows']}")
    return {"mlflow_schema_seconds": r(schema_s), "mlflow_fill": filled}


def bench_mirror(scale: dict) -> dict:
    from bench import generate

    total = scale["models"] * scale["versions"]
    # The real sync (it mirrors 100,000 versions in under a minute here); BENCH_MIRROR=bulk uses the
    # bulk path instead (same reads, same field mapping, no audit events) to compare.
    use_sync = os.environ.get("BENCH_MIRROR", "sync") != "bulk"
    result = generate.mirror_sync() if use_sync else generate.mirror_bulk()
    result["versions"] = total
    # Fresh tables have no planner statistics until autovacuum gets to them (a minute or more):
    # without this the search runs as a sequential scan, which is not what a live server sees.
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("ANALYZE")
    log(f"mirror: {result}")
    return result


def search_queries(scale):
    team = "team-07"
    return {
        "filter": f"version tag team = {team}, page size 50, newest first",
        "modelgate": f"http://127.0.0.1:{MG_PORT}/api/v1/versions/?tag=team:{team}&page_size=50",
        "mlflow": (
            f"http://127.0.0.1:{MLFLOW_PORT}/api/2.0/mlflow/model-versions/search"
            f"?filter=tags.team%20%3D%20%27{team}%27&max_results=50"
        ),
        "team": team,
    }


def search_floor(team: str, seconds: float) -> dict:
    """The same query straight through psycopg2 plus JSON encoding, one process, concurrency 1."""
    import psycopg2

    conn = psycopg2.connect(f"{PG}/{MG_DB}")
    sql = (
        "SELECT m.name, v.version, v.description, v.tags, v.aliases, v.source, v.run_id, v.status, "
        "v.status_message, v.creator, v.created_at, v.updated_at, v.flavors, v.signature, v.servable, "
        "v.serving_note FROM registry_modelversion v JOIN registry_registeredmodel m ON m.id = v.model_id "
        "WHERE (v.tags -> 'team') = %s::jsonb ORDER BY v.created_at DESC, v.id DESC LIMIT 51"
    )
    cols = [
        "model",
        "version",
        "description",
        "tags",
        "aliases",
        "source",
        "run_id",
        "status",
        "status_message",
        "creator",
        "created_at",
        "updated_at",
        "flavors",
        "signature",
        "servable",
        "serving_note",
    ]
    latencies = []
    stop_at = time.perf_counter() + seconds
    with conn.cursor() as cur:
        while time.perf_counter() < stop_at:
            t = time.perf_counter()
            cur.execute(sql, (json.dumps(team),))
            rows = [dict(zip(cols, row)) for row in cur.fetchall()[:50]]
            json.dumps({"next": None, "previous": None, "results": rows}, default=str).encode()
            latencies.append(time.perf_counter() - t)
    conn.close()
    return {
        "concurrency": 1,
        "requests": len(latencies),
        "rps": r(len(latencies) / seconds, 1),
        **summary_ms(latencies),
    }


class LoadWatch:
    """While a run lasts: the peak of the machine's 1-minute load average (sampled every second,
    for the record) and the CPU split between the bench's own processes and everything else
    (``cpu_watch``). Outside work above a quarter of a core makes the figures unreliable; the load
    average alone cannot tell, as the bench's own servers and clients exceed the core count."""

    def __init__(self):
        self.peak = os.getloadavg()[0]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._cpu = CpuWatch()

    def _sample(self):
        while not self._stop.wait(1.0):
            self.peak = max(self.peak, os.getloadavg()[0])

    def __enter__(self):
        self._cpu.__enter__()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._cpu.__exit__(*exc)
        self.peak = round(max(self.peak, os.getloadavg()[0]), 2)
        self.cpu = self._cpu.share.as_dict()


def _watched(fn, *args, server_pid: int | None = None) -> dict:
    """``fn(*args)`` under a LoadWatch; with ``server_pid``, also the CPU that server's process
    tree (a gunicorn master and its workers, an mlflow server) spent per answered request."""
    before = process_cpu_seconds(server_pid) if server_pid else 0.0
    with LoadWatch() as watch:
        result = fn(*args)
    out = {**result, "load_peak": watch.peak, "cpu": watch.cpu}
    if server_pid and result.get("requests"):
        out["server_cpu_ms"] = r(1000 * (process_cpu_seconds(server_pid) - before) / result["requests"])
    return out


def _over_runs(runs: list[dict]) -> dict:
    """Several runs of one load as one row: medians, with the spread of req/s kept visible."""
    rps = [x["rps"] for x in runs]
    middle = statistics.median(rps)
    return {
        "concurrency": runs[0]["concurrency"],
        "rps": r(middle, 1),
        "p50_ms": r(statistics.median(x["p50_ms"] for x in runs)),
        "p99_ms": r(statistics.median(x["p99_ms"] for x in runs)),
        "errors": sum(x.get("errors", 0) for x in runs),
        "rps_runs": [r(x, 1) for x in rps],
        "spread_pct": r(100 * (max(rps) - min(rps)) / middle, 1) if middle else None,
        "load_peak": max(x["load_peak"] for x in runs),
        "outside_cores": max(x["cpu"]["outside_cores"] for x in runs),
        "server_cpu_ms": r(statistics.median(x["server_cpu_ms"] for x in runs)) if "server_cpu_ms" in runs[0] else None,
    }


def bench_search(scale, ctx) -> dict:
    """Modelgate, MLflow REST and the psycopg2 floor on the same query, interleaved (A, B, F,
    A, B, F, …) so drift in the machine's load falls on all three alike; each figure is the
    median of the rounds, with its spread."""
    q = search_queries(scale)
    headers = {"Authorization": f"Bearer {ctx['tokens']['viewer']}"}
    out = {
        "filter": q["filter"],
        "urls": {"modelgate": q["modelgate"], "mlflow": q["mlflow"]},
        "rounds": scale["rounds"],
        "modelgate": [],
        "mlflow": [],
    }
    floor_runs = []
    for c in CONCURRENCY:
        runs: dict[str, list[dict]] = {"modelgate": [], "mlflow": []}
        for k in range(scale["rounds"]):
            runs["modelgate"].append(
                _watched(load, q["modelgate"], headers, c, scale["load_seconds"], server_pid=ctx["pids"]["modelgate"])
            )
            runs["mlflow"].append(
                _watched(load, q["mlflow"], {}, c, scale["load_seconds"], server_pid=ctx["pids"]["mlflow"])
            )
            if c == 1:
                floor_runs.append(_watched(search_floor, q["team"], scale["load_seconds"]))
            log(
                f"search c={c} round {k + 1}: modelgate {runs['modelgate'][-1]['rps']} rps, "
                f"mlflow {runs['mlflow'][-1]['rps']} rps"
            )
        for name in ("modelgate", "mlflow"):
            out[name].append(_over_runs(runs[name]))
    out["floor_psycopg2"] = _over_runs(floor_runs)
    out["ratio_rps"] = {
        str(a["concurrency"]): r(a["rps"] / b["rps"]) if b["rps"] else None
        for a, b in zip(out["modelgate"], out["mlflow"])
    }
    floor = out["floor_psycopg2"]["rps"]
    out["ratio_to_floor"] = {str(a["concurrency"]): r(a["rps"] / floor) if floor else None for a in out["modelgate"]}
    log(f"search floor: {out['floor_psycopg2']}")
    return out


def bench_pages(scale, ctx) -> dict:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from bench.generate import model_name

    client = Client()
    client.force_login(ctx["users"]["viewer"])
    pages = {
        "models list": "/models/",
        "models list, page 3": "/models/?page=3",
        "model detail": f"/models/{model_name(7)}/",
        "model detail, page 2": f"/models/{model_name(7)}/?page=2",
    }
    out = {}
    for label, path in pages.items():
        client.get(path)  # warm
        times, queries = [], set()
        for _ in range(scale["page_runs"]):
            with CaptureQueriesContext(connection) as qc:
                t = time.perf_counter()
                resp = client.get(path)
                times.append(time.perf_counter() - t)
            assert resp.status_code == 200, (path, resp.status_code)
            queries.add(len(qc.captured_queries))
        out[label] = {"path": path, **summary_ms(times), "queries": sorted(queries)}
        log(f"page {label}: {out[label]}")
    return out


def bench_register(scale, ctx) -> dict:
    import requests

    from bench.generate import run_id

    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {ctx['tokens']['engineer']}"
    base = f"http://127.0.0.1:{MG_PORT}/api/v1/models/"
    resp = s.post(base, json={"name": "bench-register"})
    resp.raise_for_status()
    times = []
    n = scale["registrations"]
    # Registration refuses a runs:/ source whose run holds no artifacts there (docs/api-for-ci.md):
    # give each run it uses the MLmodel file a logged model would have.
    for k in range(n):
        folder = Path("/tmp/bench-artifacts") / run_id(k % scale["models"], 1 + k // scale["models"]) / "artifacts"
        (folder / "model").mkdir(parents=True, exist_ok=True)
        (folder / "model" / "MLmodel").write_text(
            "flavors:\n  python_function:\n    loader_module: mlflow.pyfunc.model\n"
        )
    began = time.perf_counter()
    for k in range(n):
        body = {
            "source": f"runs:/{run_id(k % scale['models'], 1 + k // scale['models'])}/model",
            "tags": {"bench": "register"},
        }
        t = time.perf_counter()
        resp = s.post(base + "bench-register/versions/", json=body)
        times.append(time.perf_counter() - t)
        if resp.status_code != 201:
            raise RuntimeError(f"registration failed: {resp.status_code} {resp.text[:300]}")
    elapsed = time.perf_counter() - began
    out = {"versions": n, "concurrency": 1, "versions_per_second": r(n / elapsed), **summary_ms(times)}
    log(f"register: {out}")
    return out


def bench_approval(scale, ctx) -> dict:
    import redis
    from django.db import transaction

    from registry.models import ModelVersion, RegisteredModel
    from registry.promotions.models import Environment
    from registry.promotions.services import promotion_approve, promotion_request

    rds = redis.Redis.from_url(REDIS_URL)
    env = Environment.objects.create(
        name="bench",
        position=90,
        alias="bench",
        required_approvals=1,
        require_signature=False,
        require_compatible_signature=False,
        require_servable=False,
        require_previous=False,
        metric_thresholds=[],
    )
    model = RegisteredModel.objects.get(name="model-00003")
    versions = list(ModelVersion.objects.filter(model=model).order_by("version"))
    pickups, totals = [], []
    warmup = 3  # the worker's first tasks (and its start-up, if still under way) are not measured
    for k in range(scale["approvals"] + warmup):
        version = versions[k % len(versions)]
        req = promotion_request(actor=ctx["users"]["engineer"], version=version, environment=env, justification="bench")
        committed = {}
        with transaction.atomic():
            # Runs first among the on-commit callbacks: the moment the approval committed.
            transaction.on_commit(lambda: committed.setdefault("t", time.time()))  # noqa: B023 - runs at this iteration's commit
            promotion_approve(actor=ctx["users"]["approver"], request_id=req.pk, comment="bench")
        deadline = time.time() + 60
        started = finished = None
        while time.time() < deadline:
            started = started or rds.get(f"bench:prerun:{req.pk}")
            finished = rds.get(f"bench:postrun:{req.pk}")
            if finished:
                break
            time.sleep(0.002)
        if started is None:
            raise RuntimeError(f"worker did not pick up request {req.pk}")
        if k < warmup:
            continue
        pickups.append(float(started) - committed["t"])
        if finished:
            totals.append(float(finished) - committed["t"])
    out = {
        "approvals": len(pickups),
        "pickup": summary_ms(pickups),
        "pickup_each_ms": [r(p * 1000) for p in pickups],
        "to_task_end": summary_ms(totals),
        "note": "pick-up = approval commit -> task_prerun in the worker (Redis broker db 9, worker "
        "concurrency 1, prefetch 1). No deployment target is configured for this environment, "
        "so the task ends right after pick-up; approval -> live is measured below.",
    }
    log(f"approval: {out}")
    return out


def bench_live(scale, ctx) -> dict:
    """Approval -> live on the local backend: a real TensorFlow SavedModel logged to the bench MLflow
    store, promoted and rolled out by the worker (export, apply, wait, verify, move alias).
    The model server's own load time (the wait step) is reported apart and subtracted."""
    import redis
    from django.conf import settings
    from django.db import transaction

    from deployer.models import DeploymentTarget, Rollout
    from registry import services
    from registry.demo_training import log_model
    from registry.promotions.models import Environment
    from registry.promotions.services import promotion_approve, promotion_request

    engineer, approver = ctx["users"]["engineer"], ctx["users"]["approver"]
    model = services.model_create(actor=engineer, name="bench-live")
    versions = []
    for seed in (1, 2):
        logged = log_model(
            tracking_uri=settings.MLFLOW_TRACKING_URI,
            experiment="bench-live",
            artifact_location="file:///tmp/bench-artifacts/live",
            seed=seed,
            metrics={"accuracy": 0.95, "loss": 0.05},
        )
        versions.append(
            services.version_register(
                actor=engineer, model_name=model.name, source=logged.model_uri, run_id=logged.run_id
            )
        )
    env = Environment.objects.create(
        name="bench-live", position=92, alias="bench-live", required_approvals=1, require_previous=False
    )
    DeploymentTarget.objects.create(environment=env, backend=DeploymentTarget.LOCAL, startup_seconds=120)
    rds = redis.Redis.from_url(REDIS_URL)
    runs = []
    for k in range(scale["lives"]):
        version = versions[k % 2]
        req = promotion_request(actor=engineer, version=version, environment=env, justification="bench")
        if req.state != req.PENDING:
            raise RuntimeError(f"request {req.pk} is {req.state}: {req.state_reason}")
        committed = {}
        with transaction.atomic():
            transaction.on_commit(lambda: committed.setdefault("t", time.time()))  # noqa: B023 - runs at this iteration's commit
            promotion_approve(actor=approver, request_id=req.pk, comment="bench")
        deadline = time.time() + 180
        rollout = None
        while time.time() < deadline:
            rollout = Rollout.objects.filter(request_id=req.pk).first()
            if rollout is not None and rollout.state not in Rollout.ACTIVE:
                break
            time.sleep(0.05)
        if rollout is None or rollout.state != Rollout.LIVE:
            raise RuntimeError(f"rollout of request {req.pk}: {rollout and rollout.state} {rollout and rollout.reason}")
        steps = {}
        for step in rollout.steps:
            if step.get("started_at") and step.get("finished_at"):
                a, b = (datetime.fromisoformat(str(step[x])) for x in ("started_at", "finished_at"))
                steps[step["name"]] = (b - a).total_seconds()
        total = rollout.finished_at.timestamp() - committed["t"]
        picked = float(rds.get(f"bench:prerun:{req.pk}") or 0) - committed["t"]
        runs.append(
            {
                "version": version.version,
                "approval_to_live_s": r(total, 3),
                "wait_step_s": r(steps.get("wait", 0), 3),
                "approval_to_live_excluding_load_s": r(total - steps.get("wait", 0), 3),
                "pickup_ms": r(picked * 1000),
                "steps_s": {k2: r(v, 3) for k2, v in steps.items()},
            }
        )
        log(f"live #{k}: {runs[-1]}")
    excl = [x["approval_to_live_excluding_load_s"] for x in runs]
    out = {
        "rollouts": len(runs),
        "approval_to_live_excluding_load": summary_ms(excl),
        "approval_to_live": summary_ms([x["approval_to_live_s"] for x in runs]),
        "wait_step (model load)": summary_ms([x["wait_step_s"] for x in runs]),
        "runs": runs,
        "note": "A real SavedModel (the demo's iris classifier) rolled out by the worker on the local backend "
        "(the bundled development model server unless tensorflow_model_server is on PATH). "
        "Excluding load = approval commit -> rollout finished, minus the wait step.",
    }
    log(f"live: {out['approval_to_live_excluding_load']}")
    return out


def bench_router(scale) -> dict:
    """The local backend's router (deployer/local_router.py) owns a deployment's port in front of
    its model servers, so every client request takes one more loopback hop: predicts through the
    router against the same predicts sent to the stable model server's own port, same clients."""
    from deployer.backends import backend_for
    from deployer.local_router import STABLE
    from deployer.models import Deployment

    deployment = Deployment.objects.select_related("target", "model").get(model__name="bench-live")
    backend = backend_for(deployment)
    ports = {"through the router": deployment.local_port, "straight to the model server": backend.server_port(STABLE)}
    path = f"/v1/models/{deployment.model.name}/labels/{deployment.target.environment.alias}:predict"
    body = {"instances": [[5.1, 3.5, 1.4, 0.2]]}
    rows = []
    for concurrency in (1, 8):
        for way, port in ports.items():
            row = load(f"http://127.0.0.1:{port}{path}", {}, concurrency, scale["load_seconds"], body)
            rows.append({"way": way, **row})
            log(f"router: {way} c={concurrency}: {row}")
    by = {(x["way"], x["concurrency"]): x for x in rows}
    added = {
        c: r(by[("through the router", c)]["p50_ms"] - by[("straight to the model server", c)]["p50_ms"], 3)
        for c in (1, 8)
    }
    return {
        "rows": rows,
        "added_p50_ms": added,
        "note": "Predicts by label on the deployment left serving by the live benchmark (one model server, no "
        "canary: the router sends all to stable, as between canaries). Added = router p50 - direct p50.",
    }


FAKE_EXPOSITION = """# TYPE :tensorflow:serving:request_count counter
:tensorflow:serving:request_count{{model_name="m",status="OK"}} {ok}
:tensorflow:serving:request_count{{model_name="m",status="INVALID_ARGUMENT"}} {err}
# TYPE :tensorflow:serving:request_latency histogram
{buckets}:tensorflow:serving:request_latency_sum{{model_name="m",API="predict",entrypoint="REST"}} {sum}
:tensorflow:serving:request_latency_count{{model_name="m",API="predict",entrypoint="REST"}} {count}
"""
BOUNDS = [
    10,
    18,
    32.4,
    58.32,
    104.976,
    188.957,
    340.122,
    612.22,
    1101.99,
    1983.59,
    3570.47,
    6426.84,
    11568.3,
    20823,
    37481.4,
    67466.5,
    121440,
    218591,
    393464,
    708235,
    1.27482e06,
]


class _Counters:
    def __init__(self):
        self.n = 0

    def text(self):
        self.n += 1
        ok, err = 1000 * self.n, 3 * self.n
        count = ok + err
        lines, cum = [], 0
        for i, b in enumerate(BOUNDS):
            cum = min(count, int(count * (i + 1) / 12))
            lines.append(
                f':tensorflow:serving:request_latency_bucket{{model_name="m",API="predict",'
                f'entrypoint="REST",le="{b}"}} {cum}\n'
            )
        lines.append(
            f':tensorflow:serving:request_latency_bucket{{model_name="m",API="predict",'
            f'entrypoint="REST",le="+Inf"}} {count}\n'
        )
        return FAKE_EXPOSITION.format(ok=ok, err=err, buckets="".join(lines), sum=count * 1500.0, count=count)


def _serve_expositions(count: int, ports, stop) -> None:
    """In a child process: ``count`` HTTP endpoints each answering a TF Serving exposition whose
    counters grow at every read, their ports put on ``ports``; until ``stop`` is set."""

    def handler(counters: _Counters):
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                body = counters.text().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        return Handler

    servers = [ThreadingHTTPServer(("127.0.0.1", 0), handler(_Counters())) for _ in range(count)]
    for srv in servers:
        threading.Thread(target=srv.serve_forever, daemon=True).start()
    ports.put([srv.server_address[1] for srv in servers])
    stop.wait()


def _scrape_cycles(endpoints: int, cycles: int) -> dict:
    """CPU, wall time and queries of ``cycles`` scrape-and-store cycles over ``endpoints`` serving
    local deployments. The endpoints run in a child process, so the CPU measured is the
    scraper's own (reading, parsing, arithmetic, database)."""
    import multiprocessing

    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from deployer.metrics.collect import scrape_all
    from deployer.models import Deployment, DeploymentTarget
    from registry.models import RegisteredModel
    from registry.promotions.models import Environment

    context = multiprocessing.get_context("spawn")
    ports, stop = context.Queue(), context.Event()
    child = context.Process(target=_serve_expositions, args=(endpoints, ports, stop), daemon=True)
    child.start()
    name = f"bench-metrics-{endpoints}"
    env = Environment.objects.create(name=name, position=90 + endpoints % 7, alias=name, required_approvals=1)
    target = DeploymentTarget.objects.create(environment=env, backend=DeploymentTarget.LOCAL)
    now = timezone.now().replace(microsecond=0)
    try:
        models = RegisteredModel.objects.bulk_create(
            [RegisteredModel(name=f"{name}-{i:04}", created_at=now, updated_at=now) for i in range(endpoints)]
        )
        Deployment.objects.bulk_create(
            [
                Deployment(target=target, model=model, name=f"{name}-{i}", state=Deployment.SERVING, local_port=port)
                for i, (model, port) in enumerate(zip(models, ports.get(timeout=120)))
            ]
        )
        scrape_all(now)  # baselines
        cpu, wall, queries = [], [], []
        for k in range(1, cycles + 1):
            with CaptureQueriesContext(connection) as qc:
                c0, w0 = time.process_time(), time.perf_counter()
                written = scrape_all(now + timedelta(seconds=10 * k))
                cpu.append(time.process_time() - c0)
                wall.append(time.perf_counter() - w0)
            queries.append(len(qc.captured_queries))
            assert written == endpoints, (written, endpoints)
    finally:
        stop.set()
        child.join(timeout=30)
        Deployment.objects.filter(target=target).delete()
        target.delete()
        env.delete()
        RegisteredModel.objects.filter(name__startswith=f"{name}-").delete()
    return {
        "endpoints": endpoints,
        "cycles": len(cpu),
        "cpu_ms_per_cycle": summary_ms(cpu),
        "wall_ms_per_cycle": summary_ms(wall),
        "queries_per_cycle": sorted(set(queries)),
        # Beat scrapes every 10 s: the share of one core a cycle every 10 s takes.
        "core_share_at_10s": round(statistics.median(cpu) / 10, 4),
    }


def bench_metrics(scale) -> dict:
    out = {"sizes": [_scrape_cycles(n, scale["scrapes"]) for n in scale["metrics_endpoints"]]}
    out["note"] = (
        "scrape_all over N serving local deployments, each a local HTTP endpoint (in a child process) "
        "serving a TF Serving exposition with 21 latency buckets whose counters grow at each read; "
        "CPU = time.process_time of the scraping process."
    )
    log(f"metrics: {out}")
    return out


# --- report ----------------------------------------------------------------------


def targets_met(res: dict) -> list[dict]:
    rows = []
    s = res.get("search")
    if s:
        c8 = s["ratio_rps"].get("8")
        rows.append(
            {
                "target": "version search rps at c=8, Modelgate/MLflow >= 3x",
                "value": c8,
                "ratio_to_target": r(c8 / TARGETS["search_throughput_ratio_c8"]) if c8 else None,
                "met": bool(c8 and c8 >= TARGETS["search_throughput_ratio_c8"]),
            }
        )
        cpu = s["modelgate"][1].get("server_cpu_ms")
        if cpu is not None:
            rows.append(
                {
                    "target": "web-server CPU per version search request at c=8 <= 3 ms",
                    "value": cpu,
                    "ratio_to_target": r(cpu / TARGETS["search_cpu_ms"]),
                    "met": cpu <= TARGETS["search_cpu_ms"],
                }
            )
        p99 = s["modelgate"][-1]["p99_ms"]
        rows.append(
            {
                "target": "version search p99 at c=32 < 50 ms",
                "value": p99,
                "ratio_to_target": r(p99 / TARGETS["search_p99_ms_c32"]),
                "met": p99 < TARGETS["search_p99_ms_c32"],
            }
        )
    p = res.get("pages")
    if p:
        worst = max(v["p50_ms"] for v in p.values())
        constant = all(len(v["queries"]) == 1 for v in p.values())
        rows.append(
            {
                "target": f"list pages < 100 ms server time at {res['scale']['versions_total']:,} versions",
                "value": worst,
                "ratio_to_target": r(worst / TARGETS["page_server_ms"]),
                "met": worst < TARGETS["page_server_ms"],
            }
        )
        rows.append(
            {
                "target": "list pages: constant query count",
                "value": {k: v["queries"] for k, v in p.items()},
                "ratio_to_target": None,
                "met": constant,
            }
        )
    g = res.get("register")
    if g:
        rows.append(
            {
                "target": "registration >= 50 versions/s, one client",
                "value": g["versions_per_second"],
                "ratio_to_target": r(g["versions_per_second"] / TARGETS["register_per_second"]),
                "met": g["versions_per_second"] >= TARGETS["register_per_second"],
            }
        )
        rows.append(
            {
                "target": "registration p99 <= 150 ms",
                "value": g["p99_ms"],
                "ratio_to_target": r(g["p99_ms"] / TARGETS["register_p99_ms"]),
                "met": g["p99_ms"] <= TARGETS["register_p99_ms"],
            }
        )
    mt = res.get("metrics")
    if mt:
        for size in mt["sizes"]:
            cpu = size["cpu_ms_per_cycle"]["p50_ms"]
            if size["endpoints"] == 100:
                rows.append(
                    {
                        "target": "metrics cycle over 100 endpoints <= 50 ms CPU",
                        "value": cpu,
                        "ratio_to_target": r(cpu / TARGETS["scrape_cpu_ms_100"]),
                        "met": cpu <= TARGETS["scrape_cpu_ms_100"],
                    }
                )
            if size["endpoints"] == 1000:
                share = size["core_share_at_10s"]
                rows.append(
                    {
                        "target": "metrics every 10 s over 1,000 endpoints < 10 % of a core",
                        "value": share,
                        "ratio_to_target": r(share / TARGETS["scrape_core_share_1000"]),
                        "met": share < TARGETS["scrape_core_share_1000"],
                    }
                )
        counts = {size["endpoints"]: size["queries_per_cycle"] for size in mt["sizes"]}
        rows.append(
            {
                "target": "metrics: the same queries per cycle at every size",
                "value": counts,
                "ratio_to_target": None,
                "met": len({tuple(c) for c in counts.values()}) == 1 and all(len(c) == 1 for c in counts.values()),
            }
        )
    a = res.get("approval")
    if a:
        p95 = a["pickup"]["p95_ms"]
        rows.append(
            {
                "target": "approval -> pick-up p95 < 200 ms",
                "value": p95,
                "ratio_to_target": r(p95 / TARGETS["pickup_p95_ms"]),
                "met": p95 < TARGETS["pickup_p95_ms"],
            }
        )
    return rows


def machine_was_busy(res: dict) -> float | None:
    """The most outside CPU work (in cores, averaged over one measured run, or over the whole
    bench) if it was above ``cpu_watch.OUTSIDE_LIMIT_CORES``: other processes competed with the
    bench for the CPU."""
    shares = [res.get("cpu", {}).get("outside_cores", 0)]
    for name in ("modelgate", "mlflow"):
        shares += [x.get("outside_cores", 0) for x in res.get("search", {}).get(name, [])]
    shares.append(res.get("search", {}).get("floor_psycopg2", {}).get("outside_cores", 0))
    worst = max(shares)
    return worst if worst > OUTSIDE_LIMIT_CORES else None


def markdown(res: dict) -> str:
    m = res["machine"]
    L = [
        f"# Modelgate benchmark ({res['scale']['name']}) — {res['started_at']}",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB; {m['platform']}; Python {m['python']}, "
        f"Django {m['django']}, MLflow {m['mlflow']}, PostgreSQL {m['postgresql']}; commit {m['commit']}; "
        f"load average at start {m.get('loadavg_at_start')}, at end {m.get('loadavg_at_end')}; "
        f"CPU over the run: {res.get('cpu', {}).get('machine_cores', '?')} cores busy, of which the bench's "
        f"own processes {res.get('cpu', {}).get('bench_cores', '?')} and outside work "
        f"{res.get('cpu', {}).get('outside_cores', '?')}.",
        f"Scale: {res['scale']['models']:,} models × {res['scale']['versions']} versions = "
        f"{res['scale']['versions_total']:,} versions. Total run time {res['seconds']} s.",
        "",
    ]
    busy = machine_was_busy(res)
    if busy:
        L += [
            f"**The figures below are unreliable:** processes outside the bench used {busy} cores on average "
            f"while they were measured (more than {OUTSIDE_LIMIT_CORES} of the machine's {m['cores']}), so other "
            "work competed for the CPU. Run again on an idle machine before comparing.",
            "",
        ]
    L += ["## Targets", "", "| target | value | value / target | met |", "| --- | --- | --- | --- |"]
    for t in res.get("targets", []):
        L.append(
            f"| {t['target']} | {t['value']} | {t['ratio_to_target'] if t['ratio_to_target'] is not None else ''}"
            f" | {'yes' if t['met'] else '**no**'} |"
        )
    if "generate" in res:
        g = res["generate"]
        L += [
            "",
            "## Data",
            "",
            f"MLflow store filled in {g['mlflow_fill']['seconds']} s (schema by MLflow in "
            f"{g['mlflow_schema_seconds']} s): "
            + ", ".join(f"{k} {v:,}" for k, v in g["mlflow_fill"]["rows"].items())
            + ".",
        ]
    if "mirror" in res:
        mm = res["mirror"]
        L += ["", f"Mirror into Modelgate: {mm['method']}, {mm['seconds']} s."]
    if "search" in res:
        s = res["search"]
        L += [
            "",
            "## Version search",
            "",
            f"Filter: {s['filter']}. Load client: one asyncio process (aiohttp) on "
            f"the same machine; Modelgate on gunicorn {' '.join(WEB_ARGS)}, MLflow on "
            "`mlflow server --workers 2`, same PostgreSQL.",
            "",
            f"Each row: the median of {s.get('rounds', 1)} runs, run interleaved with the other servers' "
            "(Modelgate, MLflow, floor, Modelgate, …); the req/s of every run and their spread beside it.",
            "",
            "Server CPU: the CPU its process tree (gunicorn master and workers; mlflow server) spent per "
            "answered request, PostgreSQL's not included. Outside: cores' worth of CPU work outside the bench "
            "during the runs (the worst run); above "
            f"{OUTSIDE_LIMIT_CORES} the row is not to be trusted.",
            "",
            "| server | concurrency | req/s | runs, req/s | spread | p50 ms | p99 ms | errors | server CPU ms "
            "| outside | / MLflow | / floor |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]

        def row(label, x, to_mlflow="", to_floor=""):
            return (
                f"| {label} | {x['concurrency']} | {x['rps']} | {', '.join(map(str, x.get('rps_runs', [])))} | "
                f"{x.get('spread_pct', '')} % | {x['p50_ms']} | {x['p99_ms']} | {x.get('errors', 0)} | "
                f"{x.get('server_cpu_ms') if x.get('server_cpu_ms') is not None else ''} | "
                f"{x.get('outside_cores', '')} | {to_mlflow} | {to_floor} |"
            )

        for a, b in zip(s["modelgate"], s["mlflow"]):
            c = str(a["concurrency"])
            L.append(row("Modelgate", a, f"{s['ratio_rps'][c]}×", f"{s.get('ratio_to_floor', {}).get(c, '')}×"))
            L.append(row("MLflow REST", b))
        L.append(row("floor: psycopg2 + json, in process", s["floor_psycopg2"]))
    if "pages" in res:
        L += [
            "",
            "## Pages (server time in process, median of runs)",
            "",
            "| page | p50 ms | p95 ms | queries |",
            "| --- | --- | --- | --- |",
        ]
        for k, v in res["pages"].items():
            L.append(f"| {k} (`{v['path']}`) | {v['p50_ms']} | {v['p95_ms']} | {', '.join(map(str, v['queries']))} |")
    if "register" in res:
        g = res["register"]
        L += [
            "",
            "## Registration through the API",
            "",
            f"{g['versions']} versions, one client: {g['versions_per_second']} versions/s, p50 {g['p50_ms']} ms, "
            f"p99 {g['p99_ms']} ms (each: the run read and its artifacts listed in MLflow, the artifacts inspected, "
            f"create_model_version with its tags, mirror row, audit event).",
        ]
    if "approval" in res:
        a = res["approval"]
        L += [
            "",
            "## Approval to worker pick-up",
            "",
            f"{a['approvals']} approvals: p50 {a['pickup']['p50_ms']} ms, p95 {a['pickup']['p95_ms']} ms, "
            f"p99 {a['pickup']['p99_ms']} ms, max {a['pickup']['max_ms']} ms. {a['note']}",
        ]
    if "live" in res:
        lv = res["live"]
        L += [
            "",
            "## Approval to live (local backend)",
            "",
            f"{lv['rollouts']} rollouts: approval -> live excluding the model's load p50 "
            f"{lv['approval_to_live_excluding_load']['p50_ms']} ms, "
            f"max {lv['approval_to_live_excluding_load']['max_ms']} ms; "
            f"with it p50 {lv['approval_to_live']['p50_ms']} ms; the wait step (load) p50 "
            f"{lv['wait_step (model load)']['p50_ms']} ms. {lv['note']}",
            "",
            "| # | version | pick-up ms | steps (s) | total s | excluding load s |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for i, x in enumerate(lv["runs"]):
            L.append(
                f"| {i} | {x['version']} | {x['pickup_ms']} | "
                f"{', '.join(f'{k} {v}' for k, v in x['steps_s'].items())} | {x['approval_to_live_s']} | "
                f"{x['approval_to_live_excluding_load_s']} |"
            )
    if "router" in res:
        rt = res["router"]
        L += ["", "## The local router's hop", "", rt["note"], ""]
        L += ["| way | clients | requests/s | p50 ms | p99 ms | errors |", "| --- | --- | --- | --- | --- | --- |"]
        for x in rt["rows"]:
            L.append(
                f"| {x['way']} | {x['concurrency']} | {x['rps']} | {x['p50_ms']} | {x['p99_ms']} | {x['errors']} |"
            )
        L += [
            "",
            "Added p50 by the router: " + ", ".join(f"{v} ms at {c} clients" for c, v in rt["added_p50_ms"].items()),
        ]
    if "metrics" in res:
        mt = res["metrics"]
        L += ["", "## Metrics collection", "", mt["note"], ""]
        L += ["| endpoints | cycles | CPU p50 ms | CPU p95 ms | wall p50 ms | queries per cycle | core, 10 s cycles |"]
        L += ["| --- | --- | --- | --- | --- | --- | --- |"]
        for size in mt["sizes"]:
            L.append(
                f"| {size['endpoints']:,} | {size['cycles']} | {size['cpu_ms_per_cycle']['p50_ms']} | "
                f"{size['cpu_ms_per_cycle']['p95_ms']} | {size['wall_ms_per_cycle']['p50_ms']} | "
                f"{size['queries_per_cycle']} | {size['core_share_at_10s']:.1%} |"
            )
    if "memory" in res:
        L += ["", "## Peak memory (VmHWM, MB)", ""]
        for k, v in res["memory"].items():
            L.append(f"- {k}: {v}")
    if res.get("errors"):
        L += ["", "## Errors", ""] + [f"- {k}: {v}" for k, v in res["errors"].items()]
    missed = [t["target"] for t in res.get("targets", []) if not t["met"]]
    if missed:
        L += ["", "## Missed targets: where the time goes", ""]
        for prefix, profile in PROFILES:
            hits = [t for t in missed if t.startswith(prefix)]
            if hits:
                L.append(f"- {'; '.join(hits)}: the profile and why it is left is in `bench/results/{profile}`.")
    if res.get("notes"):
        L += ["", "## Notes", ""] + [f"- {n}" for n in res["notes"]]
    return "\n".join(L) + "\n"


# Each missed target's profile, kept beside the reports (a missed target stays visible with it).
PROFILES = (
    ("version search", "profile-version-search.md"),
    ("web-server CPU", "profile-version-search.md"),
    ("registration", "profile-registration.md"),
    ("metrics", "profile-metrics.md"),
)


def _interrupted(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def rerender(path: str) -> None:
    """Write a report's .md again from its .json (after the report's layout changed)."""
    res = json.loads(Path(path).read_text())
    Path(path).with_suffix(".md").write_text(markdown(res))


def main(argv=None):
    # Stop cleanly (servers, worker, model servers) on Ctrl-C or a kill; libraries imported on the
    # way may install their own handlers, so these are set again once the servers run.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _interrupted)
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", choices=SCALES, default="quick")
    ap.add_argument("--only", default="", help="comma-separated: search,pages,register,approval,live,router,metrics")
    ap.add_argument("--reuse-data", action="store_true", help="skip generating and mirroring (data from last run)")
    ap.add_argument("--label", default="")
    args = ap.parse_args(argv)
    scale = SCALES[args.scale]
    only = set(filter(None, args.only.split(","))) or {
        "search",
        "pages",
        "register",
        "approval",
        "live",
        "router",
        "metrics",
    }
    (BENCH / "var").mkdir(exist_ok=True)
    RESULTS.mkdir(exist_ok=True)
    began = time.perf_counter()
    whole_run = CpuWatch().__enter__()
    res = {
        "started_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "label": args.label,
        "scale": {"name": args.scale, **scale, "versions_total": scale["models"] * scale["versions"]},
        "machine": machine(),
        "targets_defined": TARGETS,
        "errors": {},
        "notes": [],
    }
    if not args.reuse_data:
        res["generate"] = bench_generate(scale)
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()
    if args.reuse_data:
        import django

        django.setup()
        from django.contrib.auth import get_user_model

        get_user_model().objects.filter(username__startswith="bench-").delete()
        from registry.models import RegisteredModel
        from registry.promotions.models import Environment

        Environment.objects.filter(name__startswith="bench").delete()
        RegisteredModel.objects.filter(name="bench-register").delete()
    ctx = setup_modelgate()
    stop_model_servers()  # a previous run's, if it was interrupted
    import shutil

    shutil.rmtree(BENCH / "var" / "deployments", ignore_errors=True)
    if not args.reuse_data:
        res["mirror"] = bench_mirror(scale)
    procs = {}
    try:
        procs[WEB] = start(
            [
                str(VENV_BIN / "gunicorn"),
                "console.wsgi",
                *WEB_ARGS,
                "-b",
                f"127.0.0.1:{MG_PORT}",
                "--access-logfile",
                "-" if False else "/dev/null",
            ],
            "gunicorn",
        )
        procs["mlflow server --workers 2"] = start(
            [
                str(VENV_BIN / "mlflow"),
                "server",
                "--backend-store-uri",
                MLFLOW_URI,
                "--host",
                "127.0.0.1",
                "--port",
                str(MLFLOW_PORT),
                "--workers",
                "2",
                "--default-artifact-root",
                "file:///tmp/bench-artifacts",
            ],
            "mlflow",
        )
        procs["worker (celery, concurrency 1)"] = start(
            [
                str(VENV_BIN / "celery"),
                "-A",
                "bench.probe",
                "worker",
                "-Q",
                "bench,bench-deploy",
                "-c",
                "1",
                "-l",
                "warning",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
            "worker",
        )
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, _interrupted)
        wait_http(f"http://127.0.0.1:{MG_PORT}/healthz", procs[WEB])
        ctx["pids"] = {"modelgate": procs[WEB].pid, "mlflow": procs["mlflow server --workers 2"].pid}
        wait_http(f"http://127.0.0.1:{MLFLOW_PORT}/health", procs["mlflow server --workers 2"])
        steps = [
            ("search", lambda: bench_search(scale, ctx)),
            ("pages", lambda: bench_pages(scale, ctx)),
            ("register", lambda: bench_register(scale, ctx)),
            ("approval", lambda: bench_approval(scale, ctx)),
            ("metrics", lambda: bench_metrics(scale)),
            ("live", lambda: bench_live(scale, ctx)),
            ("router", lambda: bench_router(scale)),
        ]  # live last but the router: its deployment stays serving, and the router bench uses it
        for name, fn in steps:
            if name not in only:
                continue
            try:
                res[name] = fn()
            except Exception as exc:  # report what failed, keep measuring the rest
                import traceback

                traceback.print_exc()
                res["errors"][name] = f"{type(exc).__name__}: {exc}"[:500]
        import resource

        res["memory"] = {name: tree_hwm_mb(p.pid) for name, p in procs.items()}
        res["memory"]["bench process (in-process pages, metrics)"] = round(
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
        )
    finally:
        for p in procs.values():
            stop(p)
        stop_model_servers()
    if "search" in res:
        res["notes"].append(
            "Queueing bound for the c=32 p99 target: 2 cores serve at most 2 requests at a time whatever "
            "gunicorn's threads, so at concurrency 32 a request waits behind about 15 others; p99 under "
            "50 ms needs a service time near 3 ms of CPU per request, web server and PostgreSQL together, "
            "on 2 cores shared with the load client."
        )
    whole_run.__exit__(None, None, None)
    res["cpu"] = whole_run.share.as_dict()
    res["targets"] = targets_met(res)
    res["seconds"] = round(time.perf_counter() - began, 1)
    res["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    stamp = res["started_at"].replace(":", "").replace("-", "")
    name = f"{stamp}-{args.scale}"
    (RESULTS / f"{name}.json").write_text(json.dumps(res, indent=2, default=str) + "\n")
    md = markdown(res)
    (RESULTS / f"{name}.md").write_text(md)
    (RESULTS / f"latest-{args.scale}.md").write_text(md)
    (RESULTS / "latest.md").write_text(md)
    print(md)
    log(f"wrote {RESULTS / name}.json and .md in {res['seconds']} s")


if __name__ == "__main__":
    main()
