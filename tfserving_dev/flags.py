"""tensorflow_model_server's command line, parsed the way the real binary parses it.

The real server declares its flags in tensorflow_serving/model_servers/main.cc and parses
them with TensorFlow's own parser (tensorflow/core/util/command_line_flags.cc), which
differs from argparse in ways a caller notices:

- a bool flag takes ``--flag``, ``--flag=true`` or ``--flag=false`` and nothing else;
  ``--flag=1`` or ``--flag=yes`` is "Couldn't interpret value =1 for flag flag." and the
  process prints its usage and exits with status 255 (main.cc:296-298);
- an int flag takes a whole integer: ``--file_system_poll_wait_seconds=0.5`` is refused;
- an argument no flag matches is *not* an error: the parser passes it through and main
  prints "unknown argument: <it>" and the usage, then starts anyway (main.cc:312-314).

The development server (python -m tfserving_dev) uses this parser, so a command line that
the real binary refuses is refused here too. It adds two flags of its own, documented in
DEV_ONLY_FLAGS; the real binary would report them as unknown arguments.
"""

import re
import sys
from dataclasses import dataclass, field

BOOL, INT32, INT64, FLOAT, STRING = "bool", "int32", "int64", "float", "string"


@dataclass(frozen=True)
class Flag:
    name: str
    type: str
    default: object
    usage: str = ""


# main.cc's flag list, in its order (the order matters: the first flag whose name matches wins).
TF_SERVING_FLAGS = (
    Flag("port", INT32, 8500, "TCP port to listen on for gRPC/HTTP API. Disabled if port set to zero."),
    Flag("grpc_socket_path", STRING, ""),
    Flag("rest_api_port", INT32, 0, "Port to listen on for HTTP/REST API."),
    Flag("rest_api_num_threads", INT32, 0),
    Flag("rest_api_timeout_in_ms", INT32, 30000),
    Flag("rest_api_enable_cors_support", BOOL, False),
    Flag("enable_batching", BOOL, False),
    Flag(
        "allow_version_labels_for_unavailable_models",
        BOOL,
        False,
        "If true, allows assigning unused version labels to models that are not available yet.",
    ),
    Flag("batching_parameters_file", STRING, ""),
    Flag("enable_per_model_batching_parameters", BOOL, False),
    Flag("model_config_file", STRING, ""),
    Flag("model_config_file_poll_wait_seconds", INT32, 0),
    Flag("model_name", STRING, "default"),
    Flag("model_base_path", STRING, ""),
    Flag("num_load_threads", INT32, 0),
    Flag("num_unload_threads", INT32, 0),
    Flag(
        "max_num_load_retries",
        INT32,
        5,
        "maximum number of times it retries loading a model after the first failure, before giving up. "
        "If set to 0, a load is attempted only once. Default: 5",
    ),
    Flag(
        "load_retry_interval_micros",
        INT64,
        60 * 1000 * 1000,
        "The interval, in microseconds, between each servable load retry. Default: 1 minute",
    ),
    Flag("file_system_poll_wait_seconds", INT32, 1),
    Flag("flush_filesystem_caches", BOOL, True),
    Flag("tensorflow_session_parallelism", INT64, 0),
    Flag("tensorflow_session_config_file", STRING, ""),
    Flag("tensorflow_intra_op_parallelism", INT64, 0),
    Flag("tensorflow_inter_op_parallelism", INT64, 0),
    Flag("use_alts_credentials", BOOL, False),
    Flag("ssl_config_file", STRING, ""),
    Flag("platform_config_file", STRING, ""),
    Flag("per_process_gpu_memory_fraction", FLOAT, 0.0),
    Flag("saved_model_tags", STRING, ""),
    Flag("grpc_channel_arguments", STRING, ""),
    Flag("grpc_max_threads", INT32, 0),
    Flag("enable_model_warmup", BOOL, True),
    Flag("num_request_iterations_for_warmup", INT32, 0),
    Flag("version", BOOL, False, "Display version"),
    Flag("monitoring_config_file", STRING, ""),
    Flag("remove_unused_fields_from_bundle_metagraph", BOOL, True),
    Flag("prefer_tflite_model", BOOL, False),
    Flag("num_tflite_pools", INT32, 0),
    Flag("num_tflite_interpreters_per_pool", INT32, 1),
    Flag("enable_signature_method_name_check", BOOL, False),
    Flag("xla_cpu_compilation_enabled", BOOL, False),
    Flag("enable_profiler", BOOL, True),
    Flag("thread_pool_factory_config_file", STRING, ""),
)

# The development server's own flags. rest_api_host keeps a local model server off the
# network; strict=false turns off the checks that copy the real binary's refusals.
DEV_ONLY_FLAGS = (
    Flag("rest_api_host", STRING, "0.0.0.0", "(development server only) address the REST API binds to."),  # noqa: S104 - tensorflow_model_server's own default
    Flag(
        "strict",
        BOOL,
        True,
        "(development server only) refuse what tensorflow_model_server refuses: "
        "labels on unavailable versions without the allow flag, a version that "
        "fails to load at startup.",
    ),
)

_INT = re.compile(r"\s*[+-]?\d+")  # what sscanf("%d%c") accepts as the whole value
_FLOAT = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|\s*[+-]?(inf|infinity|nan)", re.IGNORECASE)


@dataclass
class ParsedFlags:
    values: dict
    ok: bool = True
    errors: list = field(default_factory=list)  # the LOG(ERROR) lines the real parser writes
    unknown: list = field(default_factory=list)  # arguments no flag matched, in order

    def __getattr__(self, name):
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name) from None


def _match(flag: Flag, arg: str) -> tuple[bool, bool, object]:
    """(matched, value_ok, value) for one argument against one flag, as command_line_flags.cc."""
    prefix = f"--{flag.name}"
    if not arg.startswith(prefix):
        return False, True, None
    rest = arg[len(prefix) :]
    if flag.type == BOOL:
        # ParseBoolFlag (command_line_flags.cc:86-112): a bare flag is true; after the name
        # only "=true" or "=false" is accepted; anything else, even "_x", is a bad value.
        if rest in ("", "=true"):
            return True, True, True
        if rest == "=false":
            return True, True, False
        return True, False, rest
    if not rest.startswith("="):
        return False, True, None
    value = rest[1:]
    if flag.type == STRING:
        return True, True, value
    if flag.type in (INT32, INT64):
        if _INT.fullmatch(value):
            number = int(value)
            bits = 31 if flag.type == INT32 else 63
            if -(2**bits) <= number < 2**bits:
                return True, True, number
        return True, False, value
    if _FLOAT.fullmatch(value):
        return True, True, float(value)
    return True, False, value


def parse(argv: list[str], flags=TF_SERVING_FLAGS + DEV_ONLY_FLAGS) -> ParsedFlags:
    """Flags::Parse: every argument is tried against each flag in order; a bad value makes the
    parse fail but the rest are still read; unmatched arguments are passed through."""
    parsed = ParsedFlags(values={f.name: f.default for f in flags})
    for index, arg in enumerate(argv):
        if arg == "--":
            parsed.unknown.extend(argv[index:])
            break
        for flag in flags:
            matched, value_ok, value = _match(flag, arg)
            if not matched:
                continue
            if value_ok:
                parsed.values[flag.name] = value
            else:
                parsed.ok = False
                parsed.errors.append(f"Couldn't interpret value {value} for flag {flag.name}.")
            break
        else:
            parsed.unknown.append(arg)
    if parsed.unknown and parsed.unknown[0] == "--help":
        parsed.ok = False
    return parsed


def usage(program: str, flags=TF_SERVING_FLAGS + DEV_ONLY_FLAGS) -> str:
    """Flags::Usage's layout: one tab-separated line per flag with its default and type."""
    lines = [f"usage: {program}", "Flags:"]
    for flag in flags:
        if flag.type == BOOL:
            shown = f"--{flag.name}={'true' if flag.default else 'false'}"
        elif flag.type == STRING:
            shown = f'--{flag.name}="{flag.default}"'
        elif flag.type == FLOAT:
            shown = f"--{flag.name}={flag.default:f}"
        else:
            shown = f"--{flag.name}={flag.default}"
        lines.append(f"\t{shown:<33}\t{flag.type}\t{flag.usage}")
    return "\n".join(lines) + "\n"


def parse_or_exit(argv: list[str], program: str = "tensorflow_model_server") -> ParsedFlags:
    """What main.cc does with its command line: a bad value prints the usage and exits 255;
    an unknown argument prints "unknown argument: …" and the usage, and the server starts."""
    parsed = parse(argv)
    for error in parsed.errors:
        print(error, file=sys.stderr)  # noqa: T201 - the real binary's own output
    if not parsed.ok:
        sys.stdout.write(usage(program))
        sys.stdout.flush()
        sys.exit(255)
    if parsed.unknown:
        sys.stdout.write(f"unknown argument: {parsed.unknown[0]}\n" + usage(program))
        sys.stdout.flush()
    return parsed
