"""The layers docs/architecture.md describes are import-linter contracts that `make lint` runs:
breaking one fails the build with the contract's name (issue 14)."""

import ast
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def contracts() -> dict[str, dict]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    return {contract["id"]: contract for contract in config["contracts"]}


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(root / "pyproject.toml"), "--no-cache"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_code_keeps_every_contract():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout[-3000:]
    assert f"Contracts: {len(contracts())} kept, 0 broken." in result.stdout


def test_every_registry_module_but_promotions_is_held_below_the_promotion_workflow():
    listed = set(contracts()["registry-core-below-promotions"]["source_modules"])
    present = {
        f"registry.{path.stem if path.is_file() else path.name}"
        for path in (ROOT / "registry").iterdir()
        if (path.suffix == ".py" and path.stem != "__init__") or (path / "__init__.py").exists()
    }
    assert present - {"registry.promotions"} == listed


def copy_of_the_code(tmp_path: Path) -> Path:
    for name in tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["root_packages"]:
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_a_registry_module_that_imports_the_deployer_fails_lint_naming_the_contract(tmp_path):
    models = copy_of_the_code(tmp_path) / "registry" / "models.py"
    models.write_text(models.read_text() + "\nfrom deployer.models import Rollout  # noqa\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert "The registry never imports the deployer BROKEN" in result.stdout
    assert "registry.models -> deployer.models" in result.stdout


def test_the_development_server_reaching_into_the_deployer_fails_lint_naming_the_contract(tmp_path):
    server = copy_of_the_code(tmp_path) / "tfserving_dev" / "server.py"
    server.write_text(server.read_text() + "\nfrom deployer.manifests import Release  # noqa\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert "The development server imports no app but TF Serving's names BROKEN" in result.stdout
    assert "tfserving_dev.server -> deployer.manifests" in result.stdout


@pytest.mark.parametrize(
    "module",
    [
        "tfserving.py",  # the development server's one import from the deployer brings nothing along
        "local_router.py",  # the local backend's router runs as a program of its own
    ],
)
def test_these_deployer_modules_import_only_the_standard_library(module):
    tree = ast.parse((ROOT / "deployer" / module).read_text())
    imported = {
        (node.module if isinstance(node, ast.ImportFrom) else alias.name).split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert imported <= set(sys.stdlib_module_names), imported


def test_the_local_router_reaching_into_the_deployer_fails_lint_naming_the_contract(tmp_path):
    router = copy_of_the_code(tmp_path) / "deployer" / "local_router.py"
    router.write_text(router.read_text() + "\nfrom deployer.tfserving import METRICS_PATH  # noqa\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert "The local router imports nothing of the project BROKEN" in result.stdout
    assert "deployer.local_router -> deployer.tfserving" in result.stdout


def test_a_cycle_hidden_by_an_import_inside_a_function_fails_lint_naming_the_contract(tmp_path):
    notify = copy_of_the_code(tmp_path) / "registry" / "promotions" / "notify.py"
    notify.write_text(notify.read_text() + "\n\ndef _send():\n    from .tasks import send_promotion_email  # noqa\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert f"{contracts()['no-cycles']['name']} BROKEN" in " ".join(result.stdout.split())
