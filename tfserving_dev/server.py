"""LocalModelServer: the development server's models.config, its reloads and its REST port,
started as tensorflow_model_server starts (model_servers/server.cc, server_core.cc)."""

import logging
import os
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path

from deployer.tfserving import AVAILABLE, END, METRICS_PATH
from tfserving_dev.config import (
    ModelConfig,
    _config_text,
    check_platforms,
    read_model_server_config,
    validate_config_list,
)
from tfserving_dev.errors import ServingError
from tfserving_dev.manager import ModelManager
from tfserving_dev.metrics import ServingMetrics
from tfserving_dev.rest_api import App, handler_class
from tfserving_dev.tensors import load_savedmodel

log = logging.getLogger(__name__)


class StartupError(Exception):
    """The server cannot start, with TF Serving's status text ("FAILED_PRECONDITION: …")."""


class LocalModelServer:
    """TF Serving's REST API on host:port for the models in a models.config.

    port=0 picks a free port (read .port or .url after construction). Version directories
    are polled every poll_seconds, as TF Serving's --file_system_poll_wait_seconds does. The
    models.config is re-read on reload(), and, with config_poll_seconds > 0, whenever the file
    changes, as --model_config_file_poll_wait_seconds does: the local runtime backend
    switches versions by rewriting the file, exactly as a ConfigMap update would.

    strict=True refuses what tensorflow_model_server refuses (the command line's default):
    a config whose version_labels point at a version that is not AVAILABLE, unless
    allow_version_labels_for_unavailable_models allows it (server_core.cc:498-533), at start
    and on every reload; and at start, a model whose latest version fails to load, after
    max_num_load_retries (start() raises StartupError; the command line exits 255, as main.cc
    does). In strict mode the REST API answers only once the initial load is over, as the real
    server starts its HTTP server after ServerCore::Create returns."""

    def __init__(
        self,
        config_path,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        metrics_path: str | None = METRICS_PATH,
        poll_seconds: float = 1.0,
        config_poll_seconds: float = 0.0,
        loader=load_savedmodel,
        strict: bool = False,
        allow_version_labels_for_unavailable_models: bool = False,
        max_num_load_retries: int = 0,
        load_retry_interval: float = 0.0,
        enable_cors_support: bool = False,
    ):
        self._config_source = config_path
        self.metrics = ServingMetrics()
        self.manager = ModelManager(
            loader,
            on_load=lambda path, ok: self.metrics.record_load(model_path=path, ok=ok),
            max_num_load_retries=max_num_load_retries,
            load_retry_interval=load_retry_interval,
        )
        self.strict = strict
        self.allow_unavailable_labels = allow_version_labels_for_unavailable_models
        self._poll_seconds = poll_seconds
        self._config_poll_seconds = config_poll_seconds
        self._config_seen: str | None = None
        self._serving_config_list = False  # ServerCore's config_ is a model_config_list
        self._reload_error: str | None = None  # the last reload error logged
        self._stopped = threading.Event()
        self._threads: list[threading.Thread] = []
        self._handler = handler_class(App(self.manager, self.metrics, metrics_path, enable_cors_support))
        self._address = (host, port)
        # A fixed port in strict mode is bound after the initial load, so a client meanwhile
        # sees the connection refused, as with the real binary; port 0 must be known at once.
        self._httpd = None if strict and port else self._bind()
        self.host = host

    def _bind(self) -> ThreadingHTTPServer:
        httpd = ThreadingHTTPServer(self._address, self._handler)
        httpd.daemon_threads = True
        return httpd

    @property
    def port(self) -> int:
        return self._httpd.server_address[1] if self._httpd else self._address[1]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "LocalModelServer":
        try:
            self.reload(self._config_source)
        except ServingError as exc:
            raise StartupError(f"{exc.code}: {exc.message}") from exc
        if self.strict:
            self._await_initial_load()
        if self._httpd is None:
            self._httpd = self._bind()
        self._spawn(self._httpd.serve_forever, "rest-api")
        if self._poll_seconds and self._poll_seconds > 0:
            self._spawn(self._poll, "fs-poll")
        if self._config_poll_seconds > 0 and os.path.isfile(str(self._config_source)):
            self._spawn(self._poll_config, "config-poll")
        log.info("Exporting HTTP/REST API at:%s:%s ...", self.host, self.port)
        return self

    def _await_initial_load(self) -> None:
        """Wait, as ServerCore::Create does, until each model's latest version is AVAILABLE or
        has failed for good; any failure is the StartupError the real binary exits with
        ("N servable(s) did not become available", server_core_test.cc ErroringModel)."""
        while True:
            states = self.manager.latest_states()
            if all(s is not None and s.state in (AVAILABLE, END) for _, s in states.values()):
                break
            if self._stopped.wait(
                0.1 if all(v is not None for v, _ in states.values()) else max(self._poll_seconds or 0, 0.1)
            ):
                return
            self.manager.refresh()  # a model with no version yet waits for one, as TF Serving does
        # Every state is known here: the loop above waits until none is None.
        failed = [
            (name, version, status)
            for name, (version, status) in states.items()
            if status is not None and status.state != AVAILABLE
        ]
        if failed:
            parts = "".join(
                f"{{{{name: {name} version: {version}}} due to error: {status.error_code}: {status.error_message}}}, "
                for name, version, status in failed
            )
            raise StartupError(f"UNKNOWN: {len(failed)} servable(s) did not become available: {{{parts}}}")

    def _spawn(self, target, name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _poll(self) -> None:
        while not self._stopped.wait(self._poll_seconds):
            try:
                self.manager.refresh()
            except Exception:  # a flaky disk must not stop the poller
                log.exception("polling model directories failed")

    def _poll_config(self) -> None:
        """server.cc's PollFilesystemAndReloadConfig: a config that cannot be read, or that
        ReloadConfig refuses, is logged and the last good one keeps serving; the next poll tries
        again (logged here once per distinct error)."""
        path = str(self._config_source)
        while not self._stopped.wait(self._config_poll_seconds):
            try:
                text = Path(path).read_text()
                if text == self._config_seen:
                    continue
                configs = read_model_server_config(text, path)
            except (OSError, ServingError) as exc:
                self._log_reload_error("Failed to read ModelServerConfig file: %s", exc)
                continue
            try:
                self._reload(configs, text, path)
                self._reload_error = None
            except Exception as exc:
                self._log_reload_error("PollFilesystemAndReloadConfig failed to ReloadConfig: %s", exc)

    def _log_reload_error(self, template: str, exc: Exception) -> None:
        line = template % (exc.message if isinstance(exc, ServingError) else exc)  # the status's message alone
        if line != self._reload_error:
            log.error("%s", line)
            self._reload_error = line

    def reload(self, config_text_or_path) -> None:
        """Serve what a new models.config asks for: new versions load, then the versions it no
        longer names are unloaded (END), so there is always something serving. A config TF
        Serving would refuse raises ServingError and changes nothing (the version labels are
        checked in strict mode only)."""
        text, source = _config_text(config_text_or_path)
        self._reload(read_model_server_config(text, source), text, config_text_or_path)

    def _reload(self, configs: list[ModelConfig] | None, text: str, source) -> None:
        # ServerCore::ReloadConfig (server_core.cc:435-463, tensorflow/serving @ b6b8cca6): a
        # file that sets no config is taken only while none has been (so not on a reload
        # after a model_config_list); then the list, the version labels, the platforms.
        if configs is None:
            if self._serving_config_list:
                raise ServingError(
                    "FAILED_PRECONDITION",
                    "Cannot transition to requested config. It is only legal to transition "
                    "from one ModelConfigList to another.",
                )
            log.info("Taking no action for empty config.")
            self._config_seen = text
            self._config_source = source
            return
        validate_config_list(configs, self.manager.configs())
        if self.strict:
            self.manager.check_labels(configs, allow_unavailable=self.allow_unavailable_labels)
        check_platforms(configs)
        self.manager.apply(configs)
        self._serving_config_list = True
        self._config_seen = text
        self._config_source = source

    def wait_until_available(self, name: str, version: int, timeout: float = 60.0) -> dict:
        """Block until the version is AVAILABLE; a version that fails to load raises at once."""
        status = self.manager.wait_for(name, int(version), {AVAILABLE, END}, timeout)
        if status.state != AVAILABLE:
            raise RuntimeError(
                f"{name} version {version} did not load: {status.error_code}: {status.error_message or 'unloaded'}"
            )
        return status.as_json(int(version))

    def wait_for_state(self, name: str, version: int, states, timeout: float = 60.0) -> dict:
        return self.manager.wait_for(name, int(version), set(states), timeout).as_json(int(version))

    def stop(self) -> None:
        self._stopped.set()
        if self._httpd is not None:
            if any(t.name == "rest-api" for t in self._threads):
                self._httpd.shutdown()
            self._httpd.server_close()
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
