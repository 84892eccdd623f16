"""Which versions of which models are aspired, loading and serving: TF Serving's
AspiredVersionsManager and ServableStateMonitor, for the development server."""

import logging
import os
import threading
import time
from dataclasses import dataclass, field

from deployer.tfserving import AVAILABLE, END, LOADING, START
from tfserving_dev.config import ModelConfig, aspired_versions, version_dirs
from tfserving_dev.errors import ServingError
from tfserving_dev.tensors import Servable, _error_code, _error_message, load_savedmodel

log = logging.getLogger(__name__)


@dataclass
class VersionStatus:
    state: str = START
    error_code: str = "OK"
    error_message: str = ""
    servable: Servable | None = None

    def as_json(self, version: int) -> dict:
        return {
            "version": str(version),
            "state": self.state,
            "status": {"error_code": self.error_code, "error_message": self.error_message},
        }


@dataclass
class _Model:
    config: ModelConfig
    aspired: set = field(default_factory=set)
    dirs: dict = field(default_factory=dict)  # version -> directory name ("00000123" for 123)
    versions: dict = field(default_factory=dict)  # int -> VersionStatus


class ModelManager:
    """Which versions are aspired, loading and serving; every change wakes up waiters."""

    def __init__(
        self, loader=load_savedmodel, on_load=None, *, max_num_load_retries: int = 0, load_retry_interval: float = 0.0
    ):
        self._loader = loader
        self._on_load = on_load  # (path, ok): the load_attempt_count metric
        # TF Serving retries a failed load (--max_num_load_retries, default 5, one minute apart);
        # the version stays LOADING meanwhile and is END with the error only when they run out.
        self._retries = max(0, max_num_load_retries)
        self._retry_interval = max(0.0, load_retry_interval)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        # One load at a time, as TF Serving's default (num_load_threads=0): predictable memory.
        self._load_lock = threading.Lock()
        self._models: dict[str, _Model] = {}
        self._configs: list[ModelConfig] = []

    def apply(self, configs: list[ModelConfig], *, retry_ended: bool = True) -> None:
        """Make the served versions match the configs and the version directories on disk.

        New versions load in a background thread; versions no longer aspired are unloaded
        only once no aspired version is still loading, so a switch from v1 to v2 never leaves
        a gap. retry_ended=False (the periodic disk poll) does not retry failed versions."""
        with self._lock:
            self._configs = list(configs)
            plan = [(name, self._plan(model, retry_ended)) for name, model in self._sync(configs).items()]
            plan = [(name, to_load) for name, to_load in plan if to_load or self._has_unaspired(name)]
        for name, to_load in plan:
            threading.Thread(
                target=self._load_then_unload, args=(name, to_load), name=f"load-{name}", daemon=True
            ).start()

    def configs(self) -> list[ModelConfig]:
        """The configs applied last (empty before the first)."""
        with self._lock:
            return list(self._configs)

    def refresh(self) -> None:
        """Pick up version directories that appeared or disappeared (TF Serving polls too)."""
        with self._lock:
            configs = list(self._configs)
        self.apply(configs, retry_ended=False)

    def _has_unaspired(self, name: str) -> bool:
        model = self._models[name]
        return any(v not in model.aspired and s.state in (START, AVAILABLE) for v, s in model.versions.items())

    def _sync(self, configs: list[ModelConfig]) -> dict:
        wanted = {c.name: c for c in configs}
        for name, model in self._models.items():
            if name not in wanted:
                model.aspired = set()  # removed from the config: unload everything
        for name, config in wanted.items():
            model = self._models.setdefault(name, _Model(config=config))
            model.config = config
            model.dirs = version_dirs(config.base_path)
            model.aspired = aspired_versions(config, sorted(model.dirs))
        return self._models

    def _plan(self, model: _Model, retry_ended: bool) -> list[int]:
        to_load = []
        for version in sorted(model.aspired):
            current = model.versions.get(version)
            if current is None or (retry_ended and current.state == END):
                model.versions[version] = VersionStatus(state=START)
                to_load.append(version)
        self._changed.notify_all()
        return to_load

    def _load_then_unload(self, name: str, versions: list[int]) -> None:
        for version in versions:
            self._load(name, version)
        self._unload_unaspired(name)

    def _load(self, name: str, version: int) -> None:
        with self._lock:
            model = self._models[name]
            path = os.path.join(model.config.base_path, model.dirs.get(version, str(version)))
            self._set(model, version, VersionStatus(state=LOADING))
        log.info("Loading servable: {name: %s version: %s} from %s", name, version, path)
        for attempt in range(self._retries + 1):
            with self._load_lock:
                try:
                    outcome = VersionStatus(state=AVAILABLE, servable=self._loader(path))
                    break
                except Exception as exc:  # any failure is the version's status, as in TF Serving
                    if self._on_load:
                        self._on_load(path, False)
                    log.warning("Loading servable %s version %s failed: %s", name, version, exc)
                    outcome = VersionStatus(state=END, error_code=_error_code(exc), error_message=_error_message(exc))
            with self._lock:
                if version not in model.aspired:
                    break  # no longer wanted: TF Serving cancels the retries too
            if attempt < self._retries:
                log.info(
                    "Retrying load on servable version {name: %s version: %s} (retry %s of %s)",
                    name,
                    version,
                    attempt + 1,
                    self._retries,
                )
                time.sleep(self._retry_interval)
        if outcome.state == AVAILABLE and self._on_load:
            self._on_load(path, True)
        with self._lock:
            # A reload may have dropped this version while it loaded: then it must not serve.
            if outcome.state == AVAILABLE and version not in model.aspired:
                outcome = VersionStatus(state=END)
            self._set(model, version, outcome)
        log.info("Servable %s version %s is %s", name, version, outcome.state)

    def _unload_unaspired(self, name: str) -> None:
        with self._lock:
            model = self._models[name]
            if any(s.state in (START, LOADING) for v, s in model.versions.items() if v in model.aspired):
                return  # the thread loading those unloads when it is done
            for version, status in list(model.versions.items()):
                if version not in model.aspired and status.state in (START, AVAILABLE):
                    # END with an OK status is how TF Serving reports a cleanly unloaded version.
                    self._set(model, version, VersionStatus(state=END))
                    log.info("Unloaded servable %s version %s", name, version)

    def _set(self, model: _Model, version: int, status: VersionStatus) -> None:
        model.versions[version] = status
        self._changed.notify_all()

    def check_labels(self, configs: list[ModelConfig], *, allow_unavailable: bool) -> None:
        """Refuse a config whose version_labels point at a version that is not AVAILABLE, as
        TF Serving's ServerCore::UpdateModelVersionLabelMap does before it loads anything
        (server_core.cc:498-533). With --allow_version_labels_for_unavailable_models a label
        that is new, or keeps its version, may point anywhere; moving an existing label onto a
        version that is not AVAILABLE is refused even then."""
        with self._lock:
            current = {c.name: dict(c.labels) for c in self._configs}
            for config in configs:
                model = self._models.get(config.name)
                for label, version in config.labels:
                    existing = current.get(config.name, {}).get(label)
                    allowed = allow_unavailable and (existing is None or existing == version)
                    status = model.versions.get(version) if model else None
                    if not allowed and (status is None or status.state != AVAILABLE):
                        raise ServingError(
                            "FAILED_PRECONDITION",
                            f"Request to assign label to version {version} of model "
                            f"{config.name}, which is not currently available for inference",
                        )

    def latest_states(self) -> dict[str, tuple[int | None, VersionStatus | None]]:
        """Each configured model's highest aspired version and its status (None before the
        version directories were read): what TF Serving awaits at startup, a Latest request."""
        with self._lock:
            result = {}
            for config in self._configs:
                model = self._models.get(config.name)
                version = max(model.aspired) if model and model.aspired else None
                result[config.name] = (version, model.versions.get(version) if model and version is not None else None)
            return result

    # -- lookups used by requests --

    def status(self, name: str, version: int | None = None) -> list[dict]:
        """GetModelStatusImpl: one version, or all of them. It is given no label: TF Serving's
        GetModelStatus ignores a version label and lists every version
        (model_servers/get_model_status_impl.cc)."""
        with self._lock:
            model = self._models.get(name)
            known = model.versions if model else {}
            if version is not None:
                if version not in known:
                    raise ServingError("NOT_FOUND", f"Could not find version {version} of model {name}")
                return [known[version].as_json(version)]
            if not known:
                raise ServingError("NOT_FOUND", f"Could not find any versions of model {name}")
            # Newest first, the order of TF Serving's ServableStateMonitor.
            return [known[v].as_json(v) for v in sorted(known, reverse=True)]

    def servable(self, name: str, version: int | None = None, label: str | None = None) -> tuple[int, Servable]:
        """The (version, Servable) a request is for; not-yet-AVAILABLE versions are not found."""
        with self._lock:
            model = self._models.get(name)
            if label is not None:
                version = self._label_version(model, label)
            available = {v: s.servable for v, s in (model.versions.items() if model else ()) if s.state == AVAILABLE}
            if version is None and available:
                version = max(available)
            if version is not None and version in available:
                return version, available[version]
        request = f"Specific({name}, {version})" if version is not None else f"Latest({name})"
        raise ServingError("NOT_FOUND", f"Servable not found for request: {request}")

    @staticmethod
    def _label_version(model: _Model | None, label: str) -> int:
        labels = dict(model.config.labels) if model else {}
        if label not in labels:
            raise ServingError("INVALID_ARGUMENT", f"Unrecognized servable version label: {label}")
        return labels[label]

    def wait_for(self, name: str, version: int, states: set, timeout: float) -> VersionStatus:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                status = self._models.get(name) and self._models[name].versions.get(version)
                if status and status.state in states:
                    return status
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    now = status.state if status else "absent"
                    raise TimeoutError(f"{name} version {version} is {now}, not {sorted(states)}, after {timeout} s.")
                self._changed.wait(remaining)
