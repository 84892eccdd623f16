"""The dependency sets by role: the production image installs requirements/runtime.txt only,
so it must carry what the web, worker and beat processes import and nothing that only the
local model server, the demo, the tests or the benchmarks need (issue 14)."""

import ast
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNTIME_PACKAGES = ("console", "registry", "deployer")
# Imported only inside functions that the production processes never call without the
# `local` extra (the development model server, the demo's training, the SavedModel fallback).
LOCAL_ONLY = {"tensorflow", "numpy", "keras"}
NEVER_AT_RUNTIME = {
    "tensorflow",
    "tensorflow-cpu",
    "tensorflow-serving-api",
    "keras",
    "playwright",
    "pytest",
    "pytest-django",
    "schemathesis",
    "hypothesis",
    "ruff",
    "mypy",
    "kubernetes-validate",
}
# import name -> distribution name, where they differ.
DISTRIBUTION = {
    "yaml": "pyyaml",
    "google": "protobuf",
    "rest_framework": "djangorestframework",
    "drf_spectacular": "drf-spectacular",
    "django_htmx": "django-htmx",
    "template_partials": "django-template-partials",
    "axes": "django-axes",
    "csp": "django-csp",
    "psycopg2": "psycopg2-binary",
    "dj_database_url": "dj-database-url",
    "prometheus_client": "prometheus-client",
    "drf_spectacular_sidecar": "drf-spectacular-sidecar",
    "tensorflow_serving": "tensorflow-serving-api",
    "tensorflow": "tensorflow-cpu",  # the CPU build provides the `tensorflow` module
}


def locked(name: str) -> dict[str, str]:
    text = (ROOT / "requirements" / name).read_text()
    return {
        m.group(1).lower().replace("_", "-"): m.group(2) for m in re.finditer(r"^([A-Za-z0-9_.-]+)==(\S+)", text, re.M)
    }


def _names(dependencies: list[str]) -> set[str]:
    return {re.split(r"[<>=\[ ;]", dep, maxsplit=1)[0].lower() for dep in dependencies}


def declared_runtime() -> set[str]:
    return _names(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])


def declared_local() -> set[str]:
    return _names(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["local"])


def module_imports(tree: ast.AST) -> list[tuple[str, bool]]:
    """(top-level module, imported at module level?) for every import in a file."""
    top_level = {id(node) for node in getattr(tree, "body", [])}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name.split(".")[0], id(node) in top_level) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module.split(".")[0], id(node) in top_level))
    return found


def test_the_runtime_lock_has_no_tensorflow_and_no_test_tools():
    runtime = locked("runtime.txt")
    assert not NEVER_AT_RUNTIME & set(runtime), sorted(NEVER_AT_RUNTIME & set(runtime))
    assert {"django", "celery", "mlflow", "kubernetes", "gunicorn", "psycopg2-binary"} <= set(runtime)


def test_both_locks_pin_the_same_version_of_every_shared_package_with_hashes():
    runtime, dev = locked("runtime.txt"), locked("dev.txt")
    assert {name: version for name, version in runtime.items() if dev.get(name) != version} == {}
    for name in ("runtime.txt", "dev.txt"):
        text = (ROOT / "requirements" / name).read_text()
        assert text.count("==") == len(re.findall(r"==\S+ \\\n\s+--hash=sha256:", text)), name


def test_every_third_party_import_of_the_application_is_declared_for_its_role():
    declared = declared_runtime()
    stdlib = set(sys.stdlib_module_names)
    first_party = set(RUNTIME_PACKAGES) | {"tfserving_dev"}
    undeclared, eager_local = set(), set()
    for package in RUNTIME_PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for module, at_top in module_imports(ast.parse(path.read_text())):
                if module in stdlib or module in first_party or module == "__future__":
                    continue
                if module in LOCAL_ONLY:
                    if at_top:
                        eager_local.add(f"{path.relative_to(ROOT)}: {module}")
                    continue
                if DISTRIBUTION.get(module, module).lower().replace("_", "-") not in declared:
                    undeclared.add(f"{path.relative_to(ROOT)}: {module}")
    assert not undeclared, f"imported but not a runtime dependency in pyproject.toml: {sorted(undeclared)}"
    assert not eager_local, f"TensorFlow/numpy imported at module level (the image has neither): {sorted(eager_local)}"


def test_every_third_party_import_of_the_development_server_is_declared_in_the_local_extra():
    """tfserving_dev runs where the `local` extra is installed (make run, the tests): what it
    imports is a runtime dependency or part of that extra."""
    declared = declared_runtime() | declared_local()
    undeclared = set()
    for path in (ROOT / "tfserving_dev").rglob("*.py"):
        for module, _ in module_imports(ast.parse(path.read_text())):
            if module in sys.stdlib_module_names or module in {"tfserving_dev", "deployer"}:
                continue
            if DISTRIBUTION.get(module, module).lower().replace("_", "-") not in declared:
                undeclared.add(f"{path.relative_to(ROOT)}: {module}")
    assert not undeclared, f"imported but in neither the runtime nor the local extra: {sorted(undeclared)}"
