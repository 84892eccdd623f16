"""docker-compose.yml, .env.example and the Dockerfile, checked without a Docker engine: the
compose file parses, servers have health checks, commands name things that exist, and every
variable handed to Modelgate is one it reads (and every variable offered is used).

PyYAML comes with MLflow (a dependency); if this import fails, that is why."""

import ast
import fnmatch
import re
import shlex
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "Dockerfile"
MODELGATE_SERVICES = {"migrate", "web", "worker", "beat"}  # the image's own processes, with env_file .env
_ENV_HELPERS = {"env_str", "env_int", "env_bool", "env_list", "env_rate"}

# The keys of the Compose Specification's service, health check and volume objects this file may
# use: a typo (`healtcheck:`) would otherwise pass unnoticed, as Compose is the only other reader.
_SERVICE_KEYS = {
    "image",
    "build",
    "command",
    "entrypoint",
    "environment",
    "env_file",
    "depends_on",
    "healthcheck",
    "ports",
    "volumes",
    "tmpfs",
    "restart",
    "stop_grace_period",
    "working_dir",
    "user",
    "labels",
    "deploy",
    "profiles",
}
_HEALTHCHECK_KEYS = {"test", "interval", "timeout", "retries", "start_period", "start_interval", "disable"}
_VOLUME_KEYS = {"type", "source", "target", "read_only", "bind", "volume", "tmpfs", "consistency"}


# --- what Modelgate reads --------------------------------------------------------------------


def _string_arg(call: ast.Call) -> str | None:
    if call.args and isinstance(call.args[0], ast.Constant) and isinstance(call.args[0].value, str):
        return call.args[0].value
    return None


def _is_os_environ(node) -> bool:
    return (
        isinstance(node, ast.Attribute)
        and node.attr == "environ"
        and isinstance(node.value, ast.Name)
        and node.value.id == "os"
    )


def read_variables() -> tuple[dict[str, object], set[str]]:
    """(variables read through console.env's helpers -> their default, variables read from
    os.environ directly), from the source of console/, registry/ and deployer/. Only the first
    kind also accepts NAME_FILE."""
    helpers: dict[str, object] = {}
    environ: set[str] = set()
    for path in [
        *(ROOT / "console").rglob("*.py"),
        *(ROOT / "registry").rglob("*.py"),
        *(ROOT / "deployer").rglob("*.py"),
    ]:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call):
                name = _string_arg(node)
                func = node.func
                if name and isinstance(func, ast.Name) and func.id in _ENV_HELPERS:
                    default = node.args[1] if len(node.args) > 1 else None
                    helpers[name] = default.value if isinstance(default, ast.Constant) else None
                elif (
                    name
                    and isinstance(func, ast.Attribute)
                    and func.attr in ("get", "setdefault")
                    and _is_os_environ(func.value)
                ):
                    environ.add(name)
                elif name and isinstance(func, ast.Attribute) and func.attr == "getenv":
                    environ.add(name)
            elif (
                isinstance(node, ast.Subscript) and _is_os_environ(node.value) and isinstance(node.slice, ast.Constant)
            ):
                environ.add(node.slice.value)
    return helpers, environ


def is_read_by_modelgate(name: str) -> bool:
    helpers, environ = read_variables()
    return name in helpers or name in environ or (name.endswith("_FILE") and name[:-5] in helpers)


def test_the_variable_scan_finds_the_settings_it_should():
    helpers, environ = read_variables()
    assert {
        "SECRET_KEY",
        "DATABASE_URL",
        "CELERY_BROKER_URL",
        "MLFLOW_TRACKING_URI",
        "DEPLOYER_MLFLOW_TRACKING_URI",
        "DEPLOY_QUEUE",
        "CELERY_DEFAULT_QUEUE",
    } <= set(helpers)
    assert helpers["DEPLOY_QUEUE"] == "deploy" and helpers["CELERY_DEFAULT_QUEUE"] == "celery"
    assert {"PROMETHEUS_MULTIPROC_DIR", "MLFLOW_HTTP_REQUEST_TIMEOUT"} <= environ
    assert is_read_by_modelgate("SECRET_KEY_FILE") and not is_read_by_modelgate("PROMETHEUS_MULTIPROC_DIR_FILE")
    assert not is_read_by_modelgate("DATABASE_PASSWORD")


# --- the compose file -------------------------------------------------------------------------


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def services() -> dict:
    return compose()["services"]


_INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def interpolate(text: str, env: dict | None = None) -> str:
    """Compose's ${NAME}, ${NAME:-default} and ${NAME:?error} with the given environment."""
    env = env or {}

    def one(match):
        name, op, arg = match.groups()
        value = env.get(name)
        if op in (":-", "-"):
            return value if value or (op == "-" and value is not None) else arg
        if op in (":?", "?"):
            if not value:
                raise ValueError(f"{name}: {arg}")
        return value or ""

    return _INTERPOLATION.sub(one, text).replace("$$", "$")


def interpolated_names() -> set[str]:
    return {m.group(1) for m in _INTERPOLATION.finditer(COMPOSE.read_text())}


def command(service: dict) -> list[str]:
    value = service.get("command")
    return shlex.split(value) if isinstance(value, str) else list(value or [])


def test_the_compose_file_parses_with_the_expected_services():
    assert set(services()) == {"postgres", "mlflow-db", "redis", "mlflow", "migrate", "web", "worker", "beat"}
    for name, service in services().items():
        assert set(service) <= _SERVICE_KEYS, (name, set(service) - _SERVICE_KEYS)
        assert set(service.get("healthcheck") or {}) <= _HEALTHCHECK_KEYS, name
        for volume in service.get("volumes") or []:
            assert isinstance(volume, str) or set(volume) <= _VOLUME_KEYS, (name, volume)


def test_every_image_is_pinned_and_modelgate_runs_the_image_built_here():
    for name, service in services().items():
        image = service["image"]
        assert ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest"), (name, image)
    for name in MODELGATE_SERVICES | {"mlflow"}:
        assert services()[name]["build"] == "." and services()[name]["image"] == services()["web"]["image"]


def test_every_long_running_server_has_a_health_check():
    celery = {name for name, s in services().items() if command(s)[:1] == ["celery"]}
    one_shot = {name for name, s in services().items() if s.get("restart") == "no"}
    assert celery == {"worker", "beat"} and one_shot == {"mlflow-db", "migrate"}
    for name, service in services().items():
        if name not in celery | one_shot:
            assert service["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL"), name
            assert service.get("restart") == "unless-stopped", name
    # Over TCP: while the postgres image initialises, its temporary server listens on the socket only.
    assert "127.0.0.1" in services()["postgres"]["healthcheck"]["test"]


def test_dependencies_wait_for_health_and_for_the_one_shot_jobs():
    for name, service in services().items():
        for dependency, how in (service.get("depends_on") or {}).items():
            assert dependency in services(), (name, dependency)
            if how["condition"] == "service_healthy":
                assert "healthcheck" in services()[dependency], (name, dependency)
            elif how["condition"] == "service_completed_successfully":
                assert services()[dependency].get("restart") == "no", (name, dependency)
            else:
                pytest.fail(f"{name} waits for {dependency} only to start")
    for name in ("web", "worker", "beat"):
        assert services()[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services()["mlflow"]["depends_on"]["mlflow-db"]["condition"] == "service_completed_successfully"


def test_manage_py_commands_exist():
    from django.core.management import get_commands

    migrate = command(services()["migrate"])
    assert migrate[:3] == ["python", "manage.py", "migrate"] and "--noinput" in migrate
    for name, service in services().items():
        words = command(service)
        if words[1:2] == ["manage.py"]:
            assert words[2] in get_commands(), (name, words)


def test_web_serves_console_wsgi_and_its_health_check_asks_for_healthz():
    from django.urls import reverse

    import console.wsgi

    web = services()["web"]
    words = command(web)
    assert words[:2] == ["gunicorn", "console.wsgi"] and callable(console.wsgi.application)
    assert words[words.index("--bind") + 1] == "0.0.0.0:8000"
    assert interpolate(web["ports"][0]).endswith(":8000")
    assert "/healthz" in " ".join(web["healthcheck"]["test"]) and reverse("healthz") == "/healthz"


def test_the_image_default_command_is_the_console_too():
    cmd = re.search(r"^CMD\s+(\[.*?\])\s*$", DOCKERFILE.read_text().replace("\\\n", " "), re.M | re.S)
    assert cmd, "the Dockerfile has no exec-form CMD"
    assert yaml.safe_load(cmd.group(1)) == command(services()["web"])


def test_celery_commands_name_the_console_app_and_the_settings_queues():
    import console

    helpers, _ = read_variables()
    for name in ("worker", "beat"):
        words = command(services()[name])
        assert words[:4] == ["celery", "-A", "console", name]
    assert console.celery_app.main == "modelgate"
    worker = command(services()["worker"])
    queues = interpolate(worker[worker.index("-Q") + 1]).split(",")
    # With nothing set, the worker consumes the two queues settings.py routes to by default.
    assert queues == [helpers["CELERY_DEFAULT_QUEUE"], helpers["DEPLOY_QUEUE"]]
    # And when .env renames them, the worker follows (compose fills in the same variables).
    renamed = interpolate(worker[worker.index("-Q") + 1], {"CELERY_DEFAULT_QUEUE": "a", "DEPLOY_QUEUE": "b"})
    assert renamed == "a,b"


def test_beat_keeps_its_schedule_in_a_named_volume():
    beat = services()["beat"]
    words = command(beat)
    schedule = words[words.index("--schedule") + 1]
    mounts = {volume.split(":")[1]: volume.split(":")[0] for volume in beat["volumes"]}
    (mount,) = [path for path in mounts if schedule.startswith(path.rstrip("/") + "/")]
    assert mounts[mount] in compose()["volumes"]


def test_data_lives_in_named_volumes():
    declared = set(compose()["volumes"])
    for name, target in [
        ("postgres", "/var/lib/postgresql/data"),
        ("redis", "/data"),
        ("mlflow", "/mlartifacts"),
        ("beat", "/var/lib/modelgate"),
    ]:
        mounts = {v.split(":")[1]: v.split(":")[0] for v in services()[name]["volumes"] if isinstance(v, str)}
        assert mounts[target] in declared, name
    assert "--appendonly" in command(services()["redis"])


def test_mlflow_is_a_3x_server_on_postgresql_serving_its_artifacts():
    import mlflow
    from mlflow.server.security_utils import is_allowed_host_header
    from sqlalchemy.engine import make_url

    assert mlflow.__version__.startswith("3.")
    service = services()["mlflow"]
    words = command(service)
    assert words[:2] == ["mlflow", "server"]
    options = dict(word.split("=", 1) for word in words[2:] if "=" in word)
    assert "--serve-artifacts" in words and options["--artifacts-destination"] == "/mlartifacts"
    store = interpolate(service["environment"]["MLFLOW_BACKEND_STORE_URI"], {"POSTGRES_PASSWORD": "x"})
    url = make_url(store)
    assert url.host == "postgres" and url.database == "mlflow"
    url.get_dialect().import_dbapi()  # the driver the URI names is installed (bare postgresql:// is not)
    # MLflow refuses unknown Host headers: the name Modelgate's services call it by must pass.
    allowed = interpolate(options["--allowed-hosts"]).split(",")
    modelgate_uri = services()["web"]["environment"]["MLFLOW_TRACKING_URI"]
    assert is_allowed_host_header(allowed, urlsplit(modelgate_uri).netloc)
    assert is_allowed_host_header(allowed, "localhost:5000")  # its own health check
    assert not is_allowed_host_header(allowed, "attacker.example:5000")


def test_the_kubeconfig_is_mounted_read_only_where_the_deployer_reads_it():
    for name in ("web", "worker"):
        (mount,) = [v for v in services()[name]["volumes"] if isinstance(v, dict)]
        assert mount["type"] == "bind" and mount["read_only"] is True
        assert mount["target"] == "/var/run/modelgate/kubeconfig"
        assert interpolate(mount["source"]) == "/dev/null"  # nothing configured: no cluster


def test_modelgate_services_get_only_variables_modelgate_reads():
    for name in MODELGATE_SERVICES:
        service = services()[name]
        assert service["env_file"] == ".env"
        unknown = [key for key in service.get("environment") or {} if not is_read_by_modelgate(key)]
        assert not unknown, f"{name} sets variables Modelgate never reads: {unknown}"


# --- .env.example ----------------------------------------------------------------------------

_ASSIGNMENT = re.compile(r"^(#\s*)?([A-Z][A-Z0-9_]*)=(.*)$")


def env_example() -> dict[str, tuple[bool, str]]:
    """NAME -> (set, value); set is False for the commented-out optional ones."""
    found = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = _ASSIGNMENT.match(line.strip())
        if match:
            found[match.group(2)] = (match.group(1) is None, match.group(3))
    return found


def test_every_variable_in_env_example_is_read_by_modelgate_or_used_by_compose():
    names = env_example()
    assert names, ".env.example lists no variables"
    compose_only = interpolated_names()
    for name in names:
        assert is_read_by_modelgate(name) or name in compose_only, f"{name} in .env.example is used by nothing"
    # Variables meant for compose itself are not Modelgate settings with another meaning.
    for name in compose_only - {"CELERY_DEFAULT_QUEUE", "DEPLOY_QUEUE"}:
        assert not is_read_by_modelgate(name), name


def test_every_variable_compose_interpolates_is_offered_in_env_example():
    assert interpolated_names() <= set(env_example())


def test_env_example_does_not_set_what_compose_overrides():
    overridden = set(compose()["x-modelgate-environment"])
    assert overridden == {"DATABASE_URL", "CELERY_BROKER_URL", "MLFLOW_TRACKING_URI"}
    assert not overridden & set(env_example())


def test_env_example_holds_no_secrets_and_keeps_the_health_check_host():
    values = {name: value for name, (is_set, value) in env_example().items() if is_set}
    assert values["SECRET_KEY"] == "" and values["POSTGRES_PASSWORD"] == ""
    with pytest.raises(ValueError, match="POSTGRES_PASSWORD"):
        interpolate(services()["postgres"]["environment"]["POSTGRES_PASSWORD"], values)
    assert values["DEBUG"] == "false"
    assert "localhost" in values["ALLOWED_HOSTS"].split(",")


def test_gitignore_ignores_env_but_not_the_example():
    patterns = [
        line.strip()
        for line in (ROOT / ".gitignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert ".env" in patterns
    assert not any(fnmatch.fnmatch(".env.example", p.rstrip("/")) for p in patterns if not p.startswith("!"))


# --- the Dockerfile -------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line.strip() else "")
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def test_dockerfile_builds_from_python_slim_with_only_the_hashed_runtime_lock():
    instructions = dockerfile_instructions()
    assert instructions[0][0] == "FROM" and instructions[0][1].startswith("python:3.11-slim")
    runs = [args for op, args in instructions if op == "RUN"]
    assert any("pip install --require-hashes --no-deps -r requirements/runtime.txt" in run for run in runs)
    # Every other pip install adds no dependency the lock did not pin.
    for run in runs:
        for install in re.findall(r"pip install[^&]*", run):
            assert "--no-deps" in install, install
            assert "dev.txt" not in install and "[" not in install, install


def test_dockerfile_runs_as_a_numeric_non_root_user():
    users = [args.strip() for op, args in dockerfile_instructions() if op == "USER"]
    assert users, "no USER: the image would run as root"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0


def test_dockerfile_bakes_in_no_secrets_and_the_build_context_leaves_them_out():
    for op, args in dockerfile_instructions():
        if op in ("ENV", "ARG"):
            assert not re.search(r"(SECRET|PASSWORD|TOKEN|DATABASE_URL|BROKER_URL)", args), args
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".env", ".env.*", "kubeconfig", "*.kubeconfig", ".git", ".venv", "var"} <= set(ignored)


# --- the operations docs name only what exists ------------------------------------------------


def test_the_ci_guide_calls_only_endpoints_that_exist_and_its_workflow_parses():
    from django.urls import Resolver404, resolve

    guide = (ROOT / "docs" / "api-for-ci.md").read_text()
    paths = set(re.findall(r"/api/v1/[A-Za-z0-9_<>/$.-]*", guide))
    assert "/api/v1/promotions/" in paths and "/api/v1/models/<name>/versions/" in paths
    for path in paths:
        concrete = re.sub(r"<[^>]+>|\$[A-Za-z_]+", "7", path).replace("/7/versions", "/churn/versions")
        try:
            resolve(concrete.split("?")[0])
        except Resolver404:
            pytest.fail(f"docs/api-for-ci.md names {path}, which console/api_urls.py does not serve")
    workflow = yaml.safe_load(re.search(r"```yaml\n(.*?)```", guide, re.S).group(1))
    for step in workflow["jobs"]["train"]["steps"]:
        if "run" in step:
            subprocess.run(["bash", "-n"], input=step["run"], text=True, check=True)
