"""The local backend against the development server in its strict mode, which refuses what
the real tensorflow_model_server refuses, and that strict mode pinned to TF Serving's source.

References (tensorflow/serving, tensorflow_serving/model_servers/ unless named otherwise):
- server_core.cc:461-463   ReloadConfig replaces the config, then UpdateModelVersionLabelMap
                            runs before any model is added or loaded.
- server_core.cc:509-532   a label may point at a version that is not AVAILABLE only with
                            --allow_version_labels_for_unavailable_models, and then only if
                            the label is new or keeps its version; otherwise FAILED_PRECONDITION
                            "Request to assign label to version N of model M, which is not
                            currently available for inference".
- main.cc:104,157,162      the flags allow_version_labels_for_unavailable_models,
                            max_num_load_retries (default 5), load_retry_interval_micros.
- main.cc:296-298          a flag with a bad value: usage on stdout, exit status -1 (255).
- main.cc:312-314          an unknown argument: "unknown argument: X" and the usage, then it
                            starts anyway (no return).
- main.cc:321-325          "Failed to start server. Error: <status>", exit status 255.
- server_core_test.cc, ServerCoreTest.ErroringModel: a model whose version fails to load
                            makes ServerCore::Create fail with "1 servable(s) did not become
                            available".
- tensorflow/core/util/command_line_flags.cc:86-112 (ParseBoolFlag): only --f, --f=true and
                            --f=false; anything else is "Couldn't interpret value =x for flag f."
- get_model_status_impl.cc:82-97 the status of /labels/L ignores the label: every version.
- servables/tensorflow/get_model_metadata_impl.cc:62-64 metadata names the resolved version.
"""

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from deployer import services
from deployer.models import Deployment, Rollout
from registry.promotions.models import PromotionRequest
from tests.test_rollout_local import _predict, approve, promote
from tfserving_dev import flags as tfserving_flags
from tfserving_dev.errors import ServingError
from tfserving_dev.server import LocalModelServer, StartupError

ROOT = Path(__file__).resolve().parent.parent
LABEL_REFUSED = "Request to assign label to version {v} of model iris, which is not currently available for inference"


def config_text(base: Path, versions, labels=None) -> str:
    policy = " ".join(f"versions: {v}" for v in versions)
    label_lines = "".join(f'    version_labels {{ key: "{k}" value: {v} }}\n' for k, v in (labels or {}).items())
    return (
        f'model_config_list {{\n  config {{\n    name: "iris"\n    base_path: "{base}"\n'
        f'    model_platform: "tensorflow"\n    model_version_policy {{ specific {{ {policy} }} }}\n'
        f"{label_lines}  }}\n}}\n"
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_server(*flags, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tfserving_dev", "--rest_api_host=127.0.0.1", *flags],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )


def version_dirs(base: Path, *versions) -> Path:
    for version in versions:
        (base / str(version)).mkdir(parents=True, exist_ok=True)
    return base


def until(read, timeout=30.0):
    """read()'s first answer that does not raise ServingError, within timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return read()
        except ServingError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class FakeModels:
    """The loader edge: version directories "load" unless named in broken; counts attempts."""

    def __init__(self, broken=()):
        self.broken = set(broken)
        self.attempts: dict[int, int] = {}

    def __call__(self, path):
        version = int(Path(path).name)
        self.attempts[version] = self.attempts.get(version, 0) + 1
        if version in self.broken:
            raise OSError(f"SavedModel file does not exist at: {path}")
        return object()


# --- startup, as tensorflow_model_server starts ---


def test_a_label_without_the_allow_flag_stops_the_server_at_startup(tmp_path):
    # server_core.cc:461-463 checks labels before loading anything, so even a label on the
    # only version fails; main.cc:321-325 prints the status and exits 255.
    config = tmp_path / "models.config"
    config.write_text(config_text(version_dirs(tmp_path / "iris", 1), [1], {"staging": 1}))

    done = run_server(f"--rest_api_port={free_port()}", f"--model_config_file={config}")

    assert done.returncode == 255
    assert ("Failed to start server. Error: FAILED_PRECONDITION: " + LABEL_REFUSED.format(v=1)) in done.stdout


def test_with_the_allow_flag_the_same_config_starts_and_the_label_serves(tmp_path):
    config = tmp_path / "models.config"
    config.write_text(config_text(version_dirs(tmp_path / "iris", 1), [1], {"staging": 1}))
    server = LocalModelServer(
        config, strict=True, allow_version_labels_for_unavailable_models=True, loader=FakeModels(), poll_seconds=0
    )
    with server:
        assert server.manager.servable("iris", label="staging")[0] == 1


def test_a_version_that_fails_to_load_at_startup_ends_the_process(tmp_path):
    base = tmp_path / "iris"
    (base / "1").mkdir(parents=True)
    (base / "1" / "saved_model.pb").write_bytes(b"not a protobuf")
    config = tmp_path / "models.config"
    config.write_text(config_text(base, [1], {"staging": 1}))

    done = run_server(
        f"--rest_api_port={free_port()}",
        f"--model_config_file={config}",
        "--allow_version_labels_for_unavailable_models=true",
        "--max_num_load_retries=0",
    )

    assert done.returncode == 255, done.stdout[-2000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("Failed to start server"))
    assert line.startswith(
        "Failed to start server. Error: UNKNOWN: 1 servable(s) did not become available: "
        "{{{name: iris version: 1} due to error: "
    )


def test_a_failed_load_is_retried_as_max_num_load_retries_says_and_stays_loading_meanwhile(tmp_path):
    config = tmp_path / "models.config"
    config.write_text(config_text(version_dirs(tmp_path / "iris", 1), [1]))
    models = FakeModels(broken={1})
    server = LocalModelServer(
        config, strict=True, loader=models, poll_seconds=0, max_num_load_retries=2, load_retry_interval=0.3
    )
    states = []
    watcher = threading.Thread(
        target=lambda: states.append(server.wait_for_state("iris", 1, {"LOADING"}, timeout=10)["state"])
    )
    watcher.start()
    with pytest.raises(StartupError, match=r"1 servable\(s\) did not become available"):
        server.start()
    watcher.join()
    server.stop()
    assert states == ["LOADING"]
    assert models.attempts == {1: 3}  # the first attempt and two retries


# --- reloads while serving ---


def test_a_reload_cannot_move_a_label_onto_a_version_still_loading_even_with_the_allow_flag(tmp_path):
    # server_core.cc:512-520: the flag lets a *new* label point anywhere, not move an existing one.
    base = version_dirs(tmp_path / "iris", 1, 2)
    server = LocalModelServer(
        config_text(base, [1], {"staging": 1}),
        strict=True,
        poll_seconds=0,
        allow_version_labels_for_unavailable_models=True,
        loader=FakeModels(),
    )
    with server:
        with pytest.raises(ServingError) as refused:
            server.reload(config_text(base, [1, 2], {"staging": 2}))
        assert (refused.value.code, refused.value.message) == ("FAILED_PRECONDITION", LABEL_REFUSED.format(v=2))
        assert server.manager.servable("iris", label="staging")[0] == 1  # nothing changed
        assert server.manager.status("iris") == [
            {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
        ]

        # The way that works: load v2 under the old label, then move the label.
        server.reload(config_text(base, [1, 2], {"staging": 1, "canary": 2}))  # a new label may wait
        server.wait_until_available("iris", 2, timeout=10)
        server.reload(config_text(base, [2], {"staging": 2}))
        assert server.manager.servable("iris", label="staging")[0] == 2


def test_a_refused_config_file_keeps_the_last_good_one_serving(tmp_path):
    base = version_dirs(tmp_path / "iris", 1, 2)
    path = tmp_path / "models.config"
    path.write_text(config_text(base, [1], {"staging": 1}))
    server = LocalModelServer(
        path,
        strict=True,
        allow_version_labels_for_unavailable_models=False,
        loader=FakeModels(),
        poll_seconds=0,
        config_poll_seconds=0.1,
    )
    # Without the flag even the first config is refused (every version is unavailable then).
    with pytest.raises(StartupError, match="FAILED_PRECONDITION: " + LABEL_REFUSED.format(v=1)):
        server.start()
    server.stop()

    path.write_text(config_text(base, [1]))
    server = LocalModelServer(path, strict=True, loader=FakeModels(), poll_seconds=0, config_poll_seconds=0.1)
    with server:
        path.write_text(config_text(base, [1, 2], {"staging": 2}))  # v2 is not even loading
        # Wait for the poller to read and refuse it (not a sleep: a slow machine must not pass
        # this by never having read the new file).
        deadline = time.monotonic() + 30
        while server._reload_error is None and time.monotonic() < deadline:
            time.sleep(0.05)
        # server.cc logs the status's message alone, after what refused it.
        assert (server._reload_error or "").startswith(
            "PollFilesystemAndReloadConfig failed to ReloadConfig: Request to assign label to version 2 of model iris"
        )
        assert server.manager.status("iris") == [
            {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
        ]
        with pytest.raises(ServingError, match="Unrecognized servable version label: staging"):
            server.manager.servable("iris", label="staging")
        path.write_text(config_text(base, [1], {"staging": 1}))  # v1 is AVAILABLE: accepted
        assert until(lambda: server.manager.servable("iris", label="staging")[0]) == 1


# --- the command line ---


@pytest.mark.parametrize(
    ("argument", "error"),
    [
        (
            "--allow_version_labels_for_unavailable_models=yes",
            "Couldn't interpret value =yes for flag allow_version_labels_for_unavailable_models.",
        ),
        (
            "--allow_version_labels_for_unavailable_models=1",
            "Couldn't interpret value =1 for flag allow_version_labels_for_unavailable_models.",
        ),
        ("--file_system_poll_wait_seconds=0.5", "Couldn't interpret value 0.5 for flag file_system_poll_wait_seconds."),
        ("--max_num_load_retries=", "Couldn't interpret value  for flag max_num_load_retries."),
    ],
)
def test_a_flag_value_the_real_parser_cannot_read_is_an_error(argument, error):
    parsed = tfserving_flags.parse(["--model_config_file=/m.config", argument])
    assert not parsed.ok and parsed.errors == [error]


def test_flags_are_read_as_tensorflow_reads_them():
    parsed = tfserving_flags.parse(
        [
            "--allow_version_labels_for_unavailable_models",
            "--max_num_load_retries=0",
            "--load_retry_interval_micros=-1",
            "--model_config_file=a=b",
            "--no_such_flag=1",
            "-x",
        ]
    )
    assert parsed.ok and parsed.errors == []
    assert parsed.allow_version_labels_for_unavailable_models is True
    assert (parsed.max_num_load_retries, parsed.load_retry_interval_micros) == (0, -1)
    assert parsed.model_config_file == "a=b"
    assert parsed.unknown == ["--no_such_flag=1", "-x"]
    assert not tfserving_flags.parse(["--help"]).ok


def test_the_command_line_exits_255_on_a_bad_value_and_starts_despite_an_unknown_argument(tmp_path):
    config = tmp_path / "models.config"
    config.write_text(config_text(version_dirs(tmp_path / "iris", 1), [1], {"staging": 1}))

    bad = run_server(f"--model_config_file={config}", "--allow_version_labels_for_unavailable_models=yes")
    assert bad.returncode == 255
    assert "Couldn't interpret value =yes for flag allow_version_labels_for_unavailable_models." in bad.stderr
    assert bad.stdout.startswith("usage: ") and "\t--max_num_load_retries=5 " in bad.stdout

    # An unknown argument is reported and ignored; this run then stops at the label check,
    # which shows the server went on past the flags.
    unknown = run_server(f"--rest_api_port={free_port()}", f"--model_config_file={config}", "--no_such_flag=1")
    assert unknown.stdout.startswith("unknown argument: --no_such_flag=1\nusage: ")
    assert "Failed to start server. Error: FAILED_PRECONDITION" in unknown.stdout and unknown.returncode == 255

    empty = run_server(f"--rest_api_port={free_port()}")
    assert (
        empty.returncode == 255
        and (
            "Failed to start server. Error: INVALID_ARGUMENT: Both "
            "server_options.model_base_path and server_options.model_config_file "
            "are empty!"
        )
        in empty.stdout
    )


# --- the local backend, end to end, against the strict server ---


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_the_local_backend_rolls_out_switches_rolls_back_and_undeploys_on_the_strict_server(
    browser_client, engineer, approver, iris, staging_local, sent_tasks, mlflow_store, local_root
):
    v1, v2 = iris.versions.get(version=1), iris.versions.get(version=2)
    first = promote(browser_client, engineer, approver, v1, staging_local.environment, sent_tasks)
    assert first.state == PromotionRequest.LIVE, first.state_reason
    deployment = Deployment.objects.get(model=iris)
    root = local_root / deployment.name

    # The server is the development server in its default, strict mode, with the flags the
    # real binary needs; nothing in its log says it refused a config.
    pid = int((root / "server.pid").read_text().split()[0])
    command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert b"tfserving_dev" in command and b"--strict=false" not in command
    assert b"--allow_version_labels_for_unavailable_models=true" in command
    assert b"--max_num_load_retries=0" in command

    second = promote(browser_client, engineer, approver, v2, staging_local.environment, sent_tasks)
    assert second.state == PromotionRequest.LIVE, second.state_reason
    assert _predict(deployment, label="staging")["predictions"]
    assert 'version_labels { key: "staging" value: 2 }' in (root / "models.config").read_text()

    first_live = Rollout.objects.get(request=first)
    back = services.rollback_request(
        actor=engineer, deployment_id=deployment.pk, revision=first_live.revision, justification="v2 misbehaves"
    )
    approve(browser_client, approver, back)
    sent_tasks.run_all()
    back.refresh_from_db()
    assert back.state == PromotionRequest.LIVE, back.state_reason
    deployment.refresh_from_db()
    assert deployment.live_rollout.version == v1
    assert str(mlflow_store.client().get_model_version_by_alias("iris", "staging").version) == "1"
    assert _predict(deployment, label="staging")["predictions"]
    assert 'version_labels { key: "staging" value: 1 }' in (root / "models.config").read_text()
    log = (root / "server.log").read_text()
    assert "failed to ReloadConfig" not in log and "FAILED_PRECONDITION" not in log

    # staging requires an approval: the undeploy is a request its approver decides.
    asked = services.rollout_undeploy(actor=engineer, deployment_id=deployment.pk, reason="retired")
    assert isinstance(asked, PromotionRequest) and asked.kind == PromotionRequest.UNDEPLOY
    approve(browser_client, approver, asked)
    sent_tasks.run_all()
    undeploy = Rollout.objects.get(request=asked)
    assert undeploy.state == Rollout.DONE, undeploy.reason
    assert not root.exists()
    assert mlflow_store.client().get_registered_model("iris").aliases == {}
