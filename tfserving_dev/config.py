"""TF Serving's models.config and monitoring.config, read as tensorflow_model_server reads them,
and which versions a config asks for.

A config file is parsed with protobuf's text format into TF Serving's own messages
(ModelServerConfig from tensorflow-serving-api; MonitoringConfig, which that package does not
ship, declared below from its .proto), then held to the checks ServerCore::ReloadConfig makes
(model_servers/server_core.cc), with TF Serving's error messages.
"""

import functools
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from deployer.tfserving import METRICS_PATH
from tfserving_dev.errors import ServingError

log = logging.getLogger(__name__)

# kTensorFlowModelPlatform (model_servers/model_platform_types.h): the only platform the
# default PlatformConfigMap registers, and so the only one served.
TENSORFLOW_PLATFORM = "tensorflow"
_MODEL_TYPE_TENSORFLOW = 1  # the deprecated ModelType enum's TENSORFLOW


@dataclass(frozen=True)
class ModelConfig:
    """One `config { ... }` block. policy is "latest", "all" or "specific"; platform and
    model_type are as written ("" and 0 when absent), so get_platform() can judge them."""

    name: str
    base_path: str
    platform: str = TENSORFLOW_PLATFORM
    policy: str = "latest"
    num_versions: int = 1  # for "latest"
    versions: tuple = ()  # for "specific"
    labels: tuple = ()  # (label, version) pairs
    model_type: int = 0


# --- reading the text: ParseProtoTextFile (model_servers/server.cc) ---


def _parse_text(text: str, message, source: str):
    """text_format into `message`, or INVALID_ARGUMENT "Invalid protobuf file: '<file>'", the
    status ParseProtoTextFile returns. Where the parser stopped goes to the log, as protobuf's
    C++ parser logs it ("Error parsing text-format <type>: <line>:<column>: <message>")."""
    from google.protobuf import text_format  # noqa: PLC0415

    try:
        return text_format.Parse(text, message)
    except text_format.ParseError as exc:
        detail = re.sub(r"^\d+:\d+ : ", "", str(exc))
        log.error(
            "Error parsing text-format %s: %s:%s: %s",
            message.DESCRIPTOR.full_name,
            exc.GetLine(),
            exc.GetColumn(),
            detail,
        )
        raise ServingError("INVALID_ARGUMENT", f"Invalid protobuf file: '{source}'") from exc


def _model_config(proto) -> ModelConfig:
    policy = proto.model_version_policy
    choice = policy.WhichOneof("policy_choice") or "latest"
    return ModelConfig(
        name=proto.name,
        base_path=proto.base_path,
        platform=proto.model_platform,
        model_type=proto.model_type,
        policy=choice,
        # file_system_storage_path_source.cc: std::max(latest().num_versions(), 1U).
        num_versions=max(policy.latest.num_versions, 1),
        versions=tuple(policy.specific.versions),
        labels=tuple(sorted(proto.version_labels.items())),
    )


def read_model_server_config(text: str, source: str = "models.config") -> list[ModelConfig] | None:
    """A ModelServerConfig's model_config_list, as written (no checks beyond the text format),
    or None when the file sets neither model_config_list nor custom_model_config (an empty
    file): CONFIG_NOT_SET, which ServerCore::ReloadConfig takes differently from an empty
    list (server_core.cc:435-450, tensorflow/serving @ b6b8cca6)."""
    from tensorflow_serving.config import model_server_config_pb2  # noqa: PLC0415 - the `local` extra

    config = _parse_text(text, model_server_config_pb2.ModelServerConfig(), source)
    choice = config.WhichOneof("config")
    if choice == "custom_model_config":
        # server.cc's LoadCustomModelConfig: LOG(FATAL) there; refused here.
        raise ServingError("UNIMPLEMENTED", "ModelServer does not yet support custom model config.")
    if choice is None:
        return None
    return [_model_config(proto) for proto in config.model_config_list.config]


def read_models_config(text: str, source: str = "models.config") -> list[ModelConfig]:
    """The models a models.config lists; an empty file lists none."""
    return read_model_server_config(text, source) or []


# --- the checks ServerCore::ReloadConfig makes (model_servers/server_core.cc) ---


def _uri_is_relative_path(uri: str) -> bool:
    """UriIsRelativePath (server_core.cc:73-76): no scheme:// and not an absolute path. io::ParseURI
    reads a scheme as One(LETTER).Many(LETTER_DIGIT_DOT) before "://" (tensorflow/core/platform/
    path.cc:236-240 @ 711d5add), and Many is one or more (scanner.h:105 @ ac960b0c): a scheme has
    at least two characters, so "s://m" is a relative path."""
    return not re.match(r"[A-Za-z][0-9A-Za-z.]+://", uri) and not uri.startswith("/")


def get_platform(config: ModelConfig) -> str:
    """GetPlatform: model_platform, or the deprecated model_type, never both nor neither."""
    if config.model_type:
        log.warning("Deprecated ModelServerConfig::model_type field used. Prefer ModelServerConfig::model_platform.")
        if config.platform:
            raise ServingError(
                "INVALID_ARGUMENT",
                "Illegal setting both ModelServerConfig::model_type (deprecated) "
                "and ModelServerConfig::model_platform.",
            )
        if config.model_type != _MODEL_TYPE_TENSORFLOW:
            raise ServingError(
                "INVALID_ARGUMENT", f"ModelServerConfig::model_type choice {config.model_type} not supported."
            )
        return TENSORFLOW_PLATFORM
    if not config.platform:
        raise ServingError(
            "INVALID_ARGUMENT",
            "Illegal setting neither ModelServerConfig::model_type (deprecated) nor ModelServerConfig::model_platform.",
        )
    return config.platform


def validate_config_list(configs: list[ModelConfig], previous: Sequence[ModelConfig] = ()) -> None:
    """ValidateModelConfigList (unique names, absolute base paths), then, on a reload,
    ValidateNoModelsChangePlatforms: what ReloadConfig checks before the version labels."""
    names = set()
    for config in configs:
        if config.name in names:
            raise ServingError("INVALID_ARGUMENT", f"Illegal to list model {config.name} multiple times in config list")
        names.add(config.name)
    for config in configs:
        if _uri_is_relative_path(config.base_path):
            raise ServingError(
                "INVALID_ARGUMENT",
                f"Expected model {config.name} to have an absolute path or URI; got base_path()={config.base_path}",
            )
    old = {config.name: get_platform(config) for config in previous}
    for config in configs:
        if config.name in old and (platform := get_platform(config)) != old[config.name]:
            raise ServingError(
                "INVALID_ARGUMENT",
                f"Illegal to change a model's platform. For model {config.name} platform was "
                f"{old[config.name]} and new platform requested is {platform}",
            )


def check_platforms(configs: list[ModelConfig]) -> None:
    """CreateStoragePathRoutes: every model's platform must be one the server has (only
    TensorFlow here). ReloadConfig gets there after the version labels are checked."""
    for config in configs:
        platform = get_platform(config)
        if platform != TENSORFLOW_PLATFORM:
            raise ServingError("INVALID_ARGUMENT", f"Model {config.name} requests unsupported platform {platform}")


def parse_models_config(text: str, source: str = "models.config") -> list[ModelConfig]:
    """Read a models.config and check it as a server would at startup (the version labels
    aside: they depend on what is loaded)."""
    configs = read_models_config(text, source)
    validate_config_list(configs)
    check_platforms(configs)
    return configs


# --- monitoring.config ---


@functools.cache
def _monitoring_config_class():
    """TF Serving's MonitoringConfig (tensorflow_serving/config/monitoring_config.proto), which
    tensorflow-serving-api does not ship: its two messages, declared in a private pool."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory  # noqa: PLC0415

    field = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(
        name="tensorflow_serving/config/monitoring_config.proto", package="tensorflow.serving", syntax="proto3"
    )
    prometheus = proto.message_type.add(name="PrometheusConfig")
    prometheus.field.add(name="enable", number=1, type=field.TYPE_BOOL, label=field.LABEL_OPTIONAL)
    prometheus.field.add(name="path", number=2, type=field.TYPE_STRING, label=field.LABEL_OPTIONAL)
    proto.message_type.add(name="MonitoringConfig").field.add(
        name="prometheus_config",
        number=1,
        type=field.TYPE_MESSAGE,
        type_name=".tensorflow.serving.PrometheusConfig",
        label=field.LABEL_OPTIONAL,
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.serving.MonitoringConfig"))


def parse_monitoring_config(text: str, source: str = "monitoring.config") -> str | None:
    """The Prometheus path a MonitoringConfig enables (PrometheusExporter::kPrometheusPath
    when it names none), or None when it is disabled."""
    prometheus = _parse_text(text, _monitoring_config_class()(), source).prometheus_config
    return (prometheus.path or METRICS_PATH) if prometheus.enable else None


def _config_text(source) -> tuple[str, str]:
    """(text, name) from a path or from the config text itself (text always has a brace)."""
    if isinstance(source, os.PathLike) or "{" not in str(source):
        return Path(source).read_text(), str(source)
    return str(source), "models.config"


def version_dirs(base_path: str) -> dict[int, str]:
    """{version: directory name} for the integer-named directories under base_path, read as
    TF Serving's file_system_storage_path_source.cc does (absl::SimpleAtoi): "00000123" is
    version 123. Anything else, and numbers past int64, are ignored."""
    try:
        entries = os.scandir(base_path)
    except OSError:
        return {}
    found: dict[int, str] = {}
    with entries:
        for entry in entries:
            if entry.name.isascii() and entry.name.isdigit() and int(entry.name) < 2**63 and entry.is_dir():
                found.setdefault(int(entry.name), entry.name)
    return found


def versions_on_disk(base_path: str) -> list[int]:
    """Integer-named directories under base_path; anything else is ignored, as TF Serving does."""
    return sorted(version_dirs(base_path))


def aspired_versions(config: ModelConfig, on_disk: list[int]) -> set[int]:
    """The versions a policy asks for, among those present: a missing version is not loaded."""
    if config.policy == "all":
        return set(on_disk)
    if config.policy == "specific":
        return set(config.versions) & set(on_disk)
    return set(sorted(on_disk)[-config.num_versions :]) if config.num_versions > 0 else set()
