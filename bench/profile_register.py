"""Where a registration's time goes: ``python -m bench.profile_register [n]``.

Registers ``n`` versions of ``bench-register-profile`` in process (Django's test client, the
bench's data from the last `make bench` run) and reports, per registration, the time spent in
each MLflow gateway call (the MLflow client itself counted once, under the outermost call), in
the database, and the rest; then pyinstrument's tree if it is installed."""

import functools
import os
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

from bench.run import bench_env

os.environ.update(bench_env())


def main():
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client

    from bench.generate import run_id
    from console.accounts.services import token_create
    from registry import gateway
    from registry.models import RegisteredModel

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 40
    spent: dict[str, list[float]] = defaultdict(list)
    depth = [0]

    def timed(name, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            depth[0] += 1
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                depth[0] -= 1
                if depth[0] == 0:
                    spent[name].append(time.perf_counter() - t)

        return wrapper

    for name in dir(gateway):
        fn = getattr(gateway, name)
        if callable(fn) and getattr(fn, "__module__", "") == gateway.__name__ and not name.startswith("_"):
            if isinstance(fn, type):
                continue
            setattr(gateway, name, timed(name, fn))

    db_time = [0.0]

    def db_timer(execute, sql, params, many, context):
        t = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            db_time[0] += time.perf_counter() - t

    user = get_user_model().objects.get(username="bench-engineer")
    client = Client(HTTP_AUTHORIZATION=f"Bearer {token_create(user=user, name='profile').raw}")
    RegisteredModel.objects.filter(name="bench-register-profile").delete()
    try:
        gateway.delete_registered_model("bench-register-profile")
    except gateway.MlflowError:
        pass
    made = client.post("/api/v1/models/", {"name": "bench-register-profile"}, content_type="application/json")
    assert made.status_code == 201, made.content
    sources = []
    for k in range(n):
        rid = run_id(k % 100, 1 + (k // 100) % 20)
        folder = Path("/tmp/bench-artifacts") / rid / "artifacts" / "model"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "MLmodel").write_text("flavors:\n  python_function:\n    loader_module: mlflow.pyfunc.model\n")
        sources.append(f"runs:/{rid}/model")
    spent.clear()
    totals = []
    with connection.execute_wrapper(db_timer):
        for source in sources:
            t = time.perf_counter()
            resp = client.post(
                "/api/v1/models/bench-register-profile/versions/",
                {"source": source, "tags": {"bench": "register"}},
                content_type="application/json",
            )
            totals.append(time.perf_counter() - t)
            assert resp.status_code == 201, resp.content[:300]
    total = sum(totals)
    print(f"{n} registrations: {n / total:.1f}/s, p50 {statistics.median(totals) * 1000:.1f} ms")
    print("per registration, ms:")
    mlflow_total = 0.0
    for name, times in sorted(spent.items(), key=lambda kv: -sum(kv[1])):
        mlflow_total += sum(times)
        print(f"  gateway.{name:<28} {sum(times) / n * 1000:7.2f}  ({len(times) / n:.0f} call(s))")
    print(f"  Modelgate's database           {db_time[0] / n * 1000:7.2f}")
    print(f"  the rest (Django, DRF, checks) {(total - mlflow_total - db_time[0]) / n * 1000:7.2f}")
    print(f"  total                          {total / n * 1000:7.2f}")


if __name__ == "__main__":
    main()
