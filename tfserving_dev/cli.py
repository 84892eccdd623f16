"""tensorflow_model_server's command line for the development server: its flags, what it
prints, and its exit status (model_servers/main.cc)."""

import json
import logging
import signal
import sys
import time
from pathlib import Path

from tfserving_dev import flags
from tfserving_dev.config import parse_monitoring_config
from tfserving_dev.errors import ServingError
from tfserving_dev.server import LocalModelServer, StartupError

log = logging.getLogger(__name__)


def _model_source(args) -> str:
    if args.model_config_file:  # main.cc: "(If used, --model_name, --model_base_path are ignored.)"
        return args.model_config_file
    name = args.model_name or "default"
    return (
        f"model_config_list {{ config {{ name: {json.dumps(name)} "
        f'base_path: {json.dumps(args.model_base_path)} model_platform: "tensorflow" }} }}'
    )


def _metrics_path(args) -> str | None:
    if not args.monitoring_config_file:
        return None  # as tensorflow_model_server: no monitoring config, no metrics endpoint
    path = args.monitoring_config_file
    return parse_monitoring_config(Path(path).read_text(), path)


def _fail_to_start(error: str) -> None:
    # main.cc:321-325: the status on stdout, exit status -1 (255).
    print(f"Failed to start server. Error: {error}", flush=True)  # noqa: T201 - the real binary's own output
    sys.exit(255)


def main(argv=None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = flags.parse_or_exit(sys.argv[1:] if argv is None else list(argv), program="python -m tfserving_dev")
    if args.version:
        print("TensorFlow ModelServer: development stand-in (tfserving_dev)", flush=True)  # noqa: T201 - the real binary's own output
        return
    if not args.model_config_file and not args.model_base_path:
        _fail_to_start(
            "INVALID_ARGUMENT: Both server_options.model_base_path and server_options.model_config_file are empty!"
        )
    log.info("gRPC is not served by the development model server; --port=%s is ignored.", args.port)
    retry_micros = args.load_retry_interval_micros
    try:
        # Read before the models load, unlike server.cc, which reads it once ServerCore is up;
        # an unreadable one fails the start with the same status either way.
        metrics_path = _metrics_path(args)
    except ServingError as exc:
        _fail_to_start(f"{exc.code}: {exc.message}")
    except OSError as exc:
        _fail_to_start(str(exc))
    server = LocalModelServer(
        _model_source(args),
        host=args.rest_api_host,
        port=args.rest_api_port,
        metrics_path=metrics_path,
        poll_seconds=args.file_system_poll_wait_seconds,
        config_poll_seconds=args.model_config_file_poll_wait_seconds,
        strict=args.strict,
        allow_version_labels_for_unavailable_models=args.allow_version_labels_for_unavailable_models,
        max_num_load_retries=args.max_num_load_retries,
        load_retry_interval=max(retry_micros, 0) / 1e6,
        enable_cors_support=args.rest_api_enable_cors_support,
    )
    # Kubernetes and the tests stop the server with SIGTERM: exit through the finally below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server.start()
    except (StartupError, ValueError, OSError) as exc:
        server.stop()
        _fail_to_start(str(exc))
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
