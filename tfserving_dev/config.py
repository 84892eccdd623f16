"""TF Serving's models.config and monitoring.config: a parser for the protobuf text-format subset TF Serving reads,
and which versions a config asks for."""

import ast
import os
import re
from dataclasses import dataclass
from pathlib import Path

from deployer.tfserving_common import METRICS_PATH

# --- models.config: a small parser for the protobuf text format subset TF Serving reads ---

_TOKEN = re.compile(
    r"""
    (?P<space>[ \t\r\f\v]+|\#[^\n]*)
  | (?P<newline>\n)
  | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<number>[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_.]*)
  | (?P<punct>[{}<>:;,\[\]])
""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str
    line: int


@dataclass(frozen=True)
class _Field:
    name: str
    value: object  # a tuple of _Field for a message, a _Token for a scalar
    line: int


def _tokens(text: str, source: str) -> list[_Token]:
    tokens, line, pos = [], 1, 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match:
            raise ValueError(f"{source} line {line}: unexpected character {text[pos]!r}.")
        kind = match.lastgroup
        if kind == "newline":
            line += 1
        elif kind != "space":
            tokens.append(_Token(kind, match.group(), line))
        pos = match.end()
    return tokens


class _TextFormat:
    """Recursive descent over tokens: `name [:] { fields }`, `name: scalar`, `name: [a, b]`."""

    def __init__(self, text: str, source: str):
        self.source = source
        self.tokens = _tokens(text, source)
        self.pos = 0

    def error(self, line: int, message: str) -> ValueError:
        return ValueError(f"{self.source} line {line}: {message}")

    def peek(self) -> _Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> _Token:
        token = self.peek()
        if token is None:
            last = self.tokens[-1].line if self.tokens else 1
            raise self.error(last, "unexpected end of file (a '}' is missing?).")
        self.pos += 1
        return token

    def message(self, closing: str | None) -> tuple:
        fields = []
        while (token := self.peek()) is not None and token.text != closing:
            fields.extend(self.field())
        if closing is not None:
            self.take()  # the closing brace
        elif token is not None:
            raise self.error(token.line, f"unexpected {token.text!r}.")
        return tuple(fields)

    def field(self) -> list[_Field]:
        name = self.take()
        if name.kind != "ident":
            raise self.error(name.line, f"expected a field name, found {name.text!r}.")
        colon = self.peek() is not None and self.peek().text == ":"
        if colon:
            self.take()
        opener = self.take()
        if opener.text in "{<" and opener.kind == "punct":
            fields = [_Field(name.text, self.message("}" if opener.text == "{" else ">"), name.line)]
        elif not colon:
            raise self.error(name.line, f"expected ':' or '{{' after {name.text!r}.")
        elif opener.text == "[":
            fields = [_Field(name.text, value, name.line) for value in self.scalar_list()]
        else:
            fields = [_Field(name.text, self.scalar(opener), name.line)]
        if (sep := self.peek()) is not None and sep.text in (";", ","):
            self.take()
        return fields

    def scalar(self, token: _Token) -> _Token:
        if token.kind not in ("string", "number", "ident"):
            raise self.error(token.line, f"expected a value, found {token.text!r}.")
        return token

    def scalar_list(self) -> list[_Token]:
        values = []
        while (token := self.take()).text != "]":
            if token.text != ",":
                values.append(self.scalar(token))
        return values


def _parse_text_format(text: str, source: str) -> tuple:
    return _TextFormat(text, source).message(None)


def _string(f: _Field, source: str) -> str:
    if not isinstance(f.value, _Token) or f.value.kind != "string":
        raise ValueError(f"{source} line {f.line}: {f.name} must be a quoted string.")
    return ast.literal_eval(f.value.text)  # C-style escapes, as protobuf's text format


def _integer(f: _Field, source: str) -> int:
    if not isinstance(f.value, _Token) or not re.fullmatch(r"[-+]?\d+", f.value.text):
        raise ValueError(f"{source} line {f.line}: {f.name} must be an integer.")
    return int(f.value.text)


def _boolean(f: _Field, source: str) -> bool:
    text = f.value.text if isinstance(f.value, _Token) else ""
    if text not in ("true", "True", "t", "1", "false", "False", "f", "0"):
        raise ValueError(f"{source} line {f.line}: {f.name} must be true or false.")
    return text in ("true", "True", "t", "1")


def _message(f: _Field, source: str) -> tuple:
    if not isinstance(f.value, tuple):
        raise ValueError(f"{source} line {f.line}: {f.name} must be a message {{ ... }}.")
    return f.value


def _unknown(f: _Field, where: str, source: str) -> ValueError:
    return ValueError(f"{source} line {f.line}: unknown or unsupported field {f.name!r} in {where}.")


@dataclass(frozen=True)
class ModelConfig:
    """One `config { ... }` block. policy is "latest", "all" or "specific"."""

    name: str
    base_path: str
    platform: str = "tensorflow"
    policy: str = "latest"
    num_versions: int = 1  # for "latest"
    versions: tuple = ()  # for "specific"
    labels: tuple = ()  # (label, version) pairs


def _read_policy(f: _Field, source: str) -> dict:
    fields = _message(f, source)
    if len(fields) != 1:
        raise ValueError(f"{source} line {f.line}: model_version_policy needs exactly one of latest, all or specific.")
    (choice,) = fields
    body = _message(choice, source)
    if choice.name == "all":
        if body:
            raise _unknown(body[0], "all", source)
        return {"policy": "all"}
    if choice.name == "latest":
        num = 1
        for item in body:
            if item.name != "num_versions":
                raise _unknown(item, "latest", source)
            num = _integer(item, source)
        return {"policy": "latest", "num_versions": num}
    if choice.name == "specific":
        versions = []
        for item in body:
            if item.name != "versions":
                raise _unknown(item, "specific", source)
            versions.append(_integer(item, source))
        if not versions:
            raise ValueError(f"{source} line {choice.line}: specific needs at least one versions entry.")
        return {"policy": "specific", "versions": tuple(versions)}
    raise _unknown(choice, "model_version_policy", source)


def _read_label(f: _Field, source: str) -> tuple[str, int]:
    key = value = None
    for item in _message(f, source):
        if item.name == "key":
            key = _string(item, source)
        elif item.name == "value":
            value = _integer(item, source)
        else:
            raise _unknown(item, "version_labels", source)
    if key is None or value is None:
        raise ValueError(f"{source} line {f.line}: version_labels needs a key and a value.")
    return key, value


def _read_config(f: _Field, source: str) -> ModelConfig:
    values, labels = {}, []
    for item in _message(f, source):
        if item.name in ("name", "base_path", "model_platform"):
            values[item.name] = _string(item, source)
        elif item.name == "model_version_policy":
            values.update(_read_policy(item, source))
        elif item.name == "version_labels":
            labels.append(_read_label(item, source))
        else:
            raise _unknown(item, "config", source)
    if not values.get("name") or not values.get("base_path"):
        raise ValueError(f"{source} line {f.line}: a config needs a name and a base_path.")
    platform = values.pop("model_platform", "tensorflow")
    if platform != "tensorflow":
        raise ValueError(f'{source} line {f.line}: model_platform {platform!r} is not supported (only "tensorflow").')
    return ModelConfig(platform=platform, labels=tuple(labels), **values)


def parse_models_config(text: str, source: str = "models.config") -> list[ModelConfig]:
    """TF Serving's ModelServerConfig text, restricted to model_config_list."""
    configs = []
    for top in _parse_text_format(text, source):
        if top.name != "model_config_list":
            raise _unknown(top, "the top level", source)
        for item in _message(top, source):
            if item.name != "config":
                raise _unknown(item, "model_config_list", source)
            configs.append(_read_config(item, source))
    names = [c.name for c in configs]
    if len(set(names)) != len(names):
        raise ValueError(f"{source}: a model name appears twice: {sorted(names)}.")
    return configs


def parse_monitoring_config(text: str, source: str = "monitoring.config") -> str | None:
    """The Prometheus path a MonitoringConfig enables, or None when it is disabled."""
    enabled, path = False, ""
    for top in _parse_text_format(text, source):
        if top.name != "prometheus_config":
            raise _unknown(top, "the top level", source)
        for item in _message(top, source):
            if item.name == "enable":
                enabled = _boolean(item, source)
            elif item.name == "path":
                path = _string(item, source)
            else:
                raise _unknown(item, "prometheus_config", source)
    return (path or METRICS_PATH) if enabled else None


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
