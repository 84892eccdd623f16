"""A real Prometheus server for tests: Debian's ``prometheus`` binary on a free loopback port,
with its own storage directory, scraping the targets a test gives it every second.

Targets come through a file_sd file (Prometheus re-reads it when it changes), each with the
labels the usual kubernetes_sd relabelling gives a pod's series (``namespace``, ``pod``), so
the console's PROMETHEUS_URL queries select them as they would in a cluster. (file_sd rather
than kubernetes_sd against tests/kubeapi: Debian builds Prometheus without kubernetes_sd.)

Missing binary: the tests skip, unless MODELGATE_BROWSER_REQUIRED or CI is set (.ci/run
installs the package and sets it), where they fail.
"""

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlencode

import pytest

from deployer.backends.local import free_port
from deployer.tfserving import METRICS_PATH

SCRAPE_INTERVAL = 1.0  # seconds


def prometheus_path() -> str | None:
    return os.environ.get("PROMETHEUS_PATH") or shutil.which("prometheus")


MISSING = "No Prometheus: install Debian's prometheus package (.ci/run does) or set PROMETHEUS_PATH."


def required() -> bool:
    return bool(os.environ.get("MODELGATE_BROWSER_REQUIRED") or os.environ.get("CI"))


# For a test module: skipped at collection, before any costly fixture, when the binary is
# missing and not required; when it is required, the fixture fails instead.
needs_prometheus = pytest.mark.skipif(prometheus_path() is None and not required(), reason=MISSING)


def require_prometheus() -> str:
    path = prometheus_path()
    if path is None:
        if required():
            pytest.fail(MISSING)
        pytest.skip(MISSING)
    return path


class PrometheusServer:
    def __init__(self, binary: str, workdir: Path):
        self.binary, self.workdir = binary, workdir
        self.targets_file = workdir / "targets.json"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.set_targets([])

    def set_targets(self, targets: list[tuple[str, dict]]) -> None:
        """[(host:port, labels)]: what to scrape from now on. Written atomically (a rename),
        as Prometheus' file_sd documentation asks."""
        groups = [{"targets": [address], "labels": labels} for address, labels in targets]
        scratch = self.targets_file.with_suffix(".tmp")
        scratch.write_text(json.dumps(groups))
        scratch.replace(self.targets_file)

    def start(self) -> "PrometheusServer":
        config = self.workdir / "prometheus.yml"
        config.write_text(
            json.dumps(
                {  # JSON is YAML
                    "global": {"scrape_interval": f"{SCRAPE_INTERVAL:g}s", "scrape_timeout": f"{SCRAPE_INTERVAL:g}s"},
                    "scrape_configs": [
                        {
                            "job_name": "tensorflow-serving",
                            "metrics_path": METRICS_PATH,
                            "file_sd_configs": [{"files": [str(self.targets_file)], "refresh_interval": "1s"}],
                        }
                    ],
                }
            )
        )
        self.log = (self.workdir / "prometheus.log").open("wb")
        self.process = subprocess.Popen(
            [
                self.binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.wait_for(self._ready, timeout=30, message="Prometheus did not become ready")
        return self

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"Prometheus exited: {(self.workdir / 'prometheus.log').read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def query(self, expr: str, at: float | None = None) -> list[dict]:
        """An instant query's vector: [{"metric": {...}, "value": [t, "v"]}]."""
        params = {"query": expr, **({"time": f"{at:.3f}"} if at is not None else {})}
        with urllib.request.urlopen(f"{self.url}/api/v1/query?{urlencode(params)}", timeout=10) as response:
            answer = json.loads(response.read())
        assert answer["status"] == "success", answer
        return answer["data"]["result"]

    def value(self, expr: str, at: float | None = None) -> float | None:
        """The single value of a query that sums to one series (None: no series)."""
        result = self.query(expr, at)
        assert len(result) <= 1, result
        return float(result[0]["value"][1]) if result else None

    def wait_for(self, condition, *, timeout: float = 20, message: str = "") -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(message or "timed out")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if getattr(self, "log", None):
            self.log.close()


@pytest.fixture
def prometheus(tmp_path):
    """A running Prometheus with no targets yet (``set_targets`` adds them)."""
    workdir = tmp_path / "prometheus"
    workdir.mkdir()
    server = PrometheusServer(require_prometheus(), workdir).start()
    yield server
    server.stop()
