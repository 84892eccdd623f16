"""Deterministic data for the benchmarks: N models x M versions written into MLflow's own
PostgreSQL schema, then mirrored into Modelgate.

MLflow's schema is created by MLflow itself (``SqlAlchemyStore`` runs its migrations on a
fresh database); the rows are then written in bulk with PostgreSQL ``COPY`` into those tables,
columns as MLflow's SQLAlchemy models declare them. ``mlflow server`` serves this data like any
other: writing 100,000 versions through the client one by one would take hours.

Per version: 2 tags (``team``, ``dataset``), a run with 2 metrics (``accuracy``, ``loss``)
in one experiment. Per model: 2 tags and the aliases ``staging`` and ``production``.
"""

import io
import random
import time
import uuid

import psycopg2

T0_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z: fixed, so two runs hold the same data
TEAMS = 20


def _copy(cur, table: str, columns: list[str], rows) -> int:
    buf = io.StringIO()
    n = 0
    for row in rows:
        buf.write("\t".join("\\N" if v is None else str(v) for v in row))
        buf.write("\n")
        n += 1
    buf.seek(0)
    cur.copy_expert(f"COPY {table} ({', '.join(columns)}) FROM STDIN", buf)
    return n


def model_name(i: int) -> str:
    return f"model-{i:05d}"


def run_id(i: int, v: int) -> str:
    return uuid.UUID(int=random.Random(i * 100_003 + v).getrandbits(128)).hex


def recreate_database(admin_dsn: str, name: str) -> None:
    conn = psycopg2.connect(admin_dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()


def mlflow_schema(uri: str, artifact_root: str) -> None:
    """Let MLflow create (and migrate) its own tables."""
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as RegistryStore
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    SqlAlchemyStore(uri, artifact_root)
    RegistryStore(uri)


def mlflow_fill(dsn: str, *, models: int, versions: int, seed: int = 7) -> dict:
    rng = random.Random(seed)
    started = time.perf_counter()
    conn = psycopg2.connect(dsn)
    counts = {}
    with conn, conn.cursor() as cur:
        cur.execute("SELECT experiment_id FROM experiments WHERE name = 'Default'")
        cur.execute(
            "INSERT INTO experiments (name, workspace, artifact_location, lifecycle_stage, creation_time, "
            "last_update_time) VALUES ('bench', 'default', 'file:///tmp/bench-artifacts', 'active', %s, %s) "
            "RETURNING experiment_id",
            (T0_MS, T0_MS),
        )
        exp = cur.fetchone()[0]

        def ts(i, v):
            return T0_MS + (v * models + i) * 1000

        counts["registered_models"] = _copy(
            cur,
            "registered_models",
            ["workspace", "name", "creation_time", "last_updated_time", "description"],
            (("default", model_name(i), ts(i, 0), ts(i, versions), f"Benchmark model {i}") for i in range(models)),
        )
        counts["registered_model_tags"] = _copy(
            cur,
            "registered_model_tags",
            ["workspace", "name", "key", "value"],
            (
                row
                for i in range(models)
                for row in (
                    ("default", model_name(i), "team", f"team-{i % TEAMS:02d}"),
                    ("default", model_name(i), "domain", f"d{i % 7}"),
                )
            ),
        )
        counts["registered_model_aliases"] = _copy(
            cur,
            "registered_model_aliases",
            ["workspace", "name", "alias", "version"],
            (
                row
                for i in range(models)
                for row in (
                    ("default", model_name(i), "production", max(1, versions - 1)),
                    ("default", model_name(i), "staging", versions),
                )
            ),
        )
        counts["runs"] = _copy(
            cur,
            "runs",
            [
                "run_uuid",
                "name",
                "source_type",
                "user_id",
                "status",
                "start_time",
                "end_time",
                "lifecycle_stage",
                "artifact_uri",
                "experiment_id",
            ],
            (
                (
                    run_id(i, v),
                    f"train-{i}-{v}",
                    "LOCAL",
                    "bench",
                    "FINISHED",
                    ts(i, v) - 60_000,
                    ts(i, v) - 1000,
                    "active",
                    f"file:///tmp/bench-artifacts/{run_id(i, v)}/artifacts",
                    exp,
                )
                for i in range(models)
                for v in range(1, versions + 1)
            ),
        )
        metrics = [
            (run_id(i, v), round(0.80 + rng.random() * 0.19, 4), round(rng.random(), 4), ts(i, v))
            for i in range(models)
            for v in range(1, versions + 1)
        ]
        for table in ("metrics", "latest_metrics"):
            counts[table] = _copy(
                cur,
                table,
                ["key", "value", "timestamp", "step", "is_nan", "run_uuid"],
                (
                    row
                    for r, acc, loss, t in metrics
                    for row in (("accuracy", acc, t, 0, "f", r), ("loss", loss, t, 0, "f", r))
                ),
            )
        counts["model_versions"] = _copy(
            cur,
            "model_versions",
            [
                "workspace",
                "name",
                "version",
                "creation_time",
                "last_updated_time",
                "description",
                "user_id",
                "current_stage",
                "source",
                "run_id",
                "status",
                "status_message",
                "storage_location",
            ],
            (
                (
                    "default",
                    model_name(i),
                    v,
                    ts(i, v),
                    ts(i, v),
                    "",
                    "bench",
                    "None",
                    f"runs:/{run_id(i, v)}/model",
                    run_id(i, v),
                    "READY",
                    None,
                    f"file:///tmp/bench-artifacts/{run_id(i, v)}/artifacts/model",
                )
                for i in range(models)
                for v in range(1, versions + 1)
            ),
        )
        counts["model_version_tags"] = _copy(
            cur,
            "model_version_tags",
            ["workspace", "name", "version", "key", "value"],
            (
                row
                for i in range(models)
                for v in range(1, versions + 1)
                for row in (
                    ("default", model_name(i), v, "team", f"team-{(i + v) % TEAMS:02d}"),
                    ("default", model_name(i), v, "dataset", f"ds-{v % 5}"),
                )
            ),
        )
    conn.close()
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("ANALYZE")
    conn.close()
    return {"seconds": round(time.perf_counter() - started, 2), "rows": counts}


def mirror_sync() -> dict:
    """The real sync (registry.sync.registry_sync): the path production uses."""
    from registry.sync import registry_sync

    started = time.perf_counter()
    report = registry_sync()
    return {
        "method": "registry.sync.registry_sync",
        "seconds": round(time.perf_counter() - started, 2),
        "report": report.as_dict(),
    }


def mirror_bulk(batch: int = 5000) -> dict:
    """Read MLflow through the gateway exactly as the sync does and bulk-insert the mirror rows
    with the sync's own field mapping (registry.mirror). No audit events, no artifact
    inspection: only for filling an empty mirror at benchmark scale."""
    from django.db import connection

    from registry import gateway
    from registry.mirror import model_fields, version_fields
    from registry.models import ModelVersion, RegisteredModel

    started = time.perf_counter()
    remote = list(gateway.iter_registered_models())
    read_models = time.perf_counter() - started
    ids = {}
    objs = [RegisteredModel(name=rm.name, **model_fields(rm)) for rm in remote]
    for obj in RegisteredModel.objects.bulk_create(objs, batch_size=batch):
        ids[obj.name] = obj
    aliases = {rm.name: model_fields(rm)["aliases"] for rm in remote}
    pending, total, counts, latest = [], 0, {}, {}
    read_versions = 0.0
    t = time.perf_counter()
    for mv in gateway.iter_model_versions():
        fields = version_fields(mv)
        number = int(mv.version)
        fields["aliases"] = sorted(a for a, v in aliases[mv.name].items() if v == number)
        pending.append(ModelVersion(model=ids[mv.name], version=number, **fields))
        counts[mv.name] = counts.get(mv.name, 0) + 1
        latest[mv.name] = max(latest.get(mv.name, 0), number)
        if len(pending) >= batch:
            read_versions += time.perf_counter() - t
            ModelVersion.objects.bulk_create(pending, batch_size=batch)
            total += len(pending)
            pending = []
            t = time.perf_counter()
    read_versions += time.perf_counter() - t
    ModelVersion.objects.bulk_create(pending, batch_size=batch)
    total += len(pending)
    for name, model in ids.items():
        model.version_count, model.latest_version = counts.get(name, 0), latest.get(name)
    RegisteredModel.objects.bulk_update(list(ids.values()), ["version_count", "latest_version"], batch_size=batch)
    with connection.cursor() as cur:
        cur.execute("ANALYZE")
    return {
        "method": "bulk (gateway read + registry.mirror mapping + bulk_create)",
        "seconds": round(time.perf_counter() - started, 2),
        "mlflow_read_seconds": round(read_models + read_versions, 2),
        "models": len(ids),
        "versions": total,
    }
