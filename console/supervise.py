"""`make run`'s process supervision: the console (gunicorn), the Celery worker and beat run as
child processes whose full output goes to a log file each, while the terminal gets only what
needs a person: warnings and errors.

Beat embedded in a worker (``worker -B``) is a child of the worker's main process: killing
that process with SIGKILL orphans beat, and the next worker's beat makes two, each sending
every periodic task. Here beat is its own process, and the worker and beat are a pair: when
either one exits, the other is stopped too, and `make run` says so and exits (console/
management/commands/up.py) rather than serve a console whose approvals can no longer deploy.

Every child runs in its own process group, so Ctrl-C reaches `make run` alone, which then
stops the children in an order that lets no task run against a stopped model server. Every
child also gets SIGTERM if `make run` itself dies (Linux ``PR_SET_PDEATHSIG``), so nothing
outlives it.
"""

import ctypes
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO

PR_SET_PDEATHSIG = 1

# The first line of a log record, as each child writes it, with its level:
RECORD_STARTS = [
    re.compile(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+: (?P<level>[A-Z]+)/"),  # celery
    re.compile(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}\] \[\d+\] \[(?P<level>[A-Z]+)\]"),  # gunicorn
    re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (?P<level>[A-Z]+) "),  # settings.LOGGING
    re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d (?P<level>[A-Z]+) "),  # MLflow's own handler
    re.compile(r"^(?P<level>[IWEF])\d{4} \d\d:\d\d:\d\d"),  # TensorFlow's C++ (glog)
    re.compile(r"^\S+:\d+: (?P<level>[A-Za-z]*Warning): "),  # warnings.warn()
    re.compile(r"^(?P<level>Traceback) \(most recent call last\):"),  # an uncaught exception
]
NOTABLE_LEVELS = {"WARNING", "ERROR", "CRITICAL", "FATAL", "W", "E", "F", "Traceback"}


def notable(line: str, previous: bool) -> bool:
    """Whether a line of a child's output belongs on the terminal: the first line of a record
    at WARNING or above, and the lines that continue such a record (a traceback, a long
    message). ``previous`` says whether the line before was shown."""
    for pattern in RECORD_STARTS:
        found = pattern.match(line)
        if found:
            level = found.group("level")
            return level in NOTABLE_LEVELS or level.endswith("Warning")
    return previous


def _relay(stream: IO[bytes], log_path: Path, label: str, echo: Callable[[str], None]) -> None:
    """Copy a child's output to its log file, and its notable lines to the terminal."""
    shown = False
    with open(log_path, "ab", buffering=0) as log:
        for raw in iter(stream.readline, b""):
            log.write(raw)
            line = raw.decode(errors="replace").rstrip()
            shown = notable(line, shown)
            if shown and line:
                echo(f"{label}: {line}")


def _own_group_dying_with_parent():  # runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        except OSError:
            pass


def spawn(
    args: list[str],
    env: dict | None = None,
    *,
    log: Path | None = None,
    label: str = "",
    echo: Callable[[str], None] | None = None,
) -> subprocess.Popen:
    """Start a child in its own process group. With ``log``, its output goes to that file and
    its warnings and errors, prefixed with ``label``, to ``echo`` (else it shares our output)."""
    if log is None:
        return subprocess.Popen(args, env=env, process_group=0, preexec_fn=_own_group_dying_with_parent)  # noqa: PLW1509 - only prctl
    log.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        args,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        process_group=0,
        preexec_fn=_own_group_dying_with_parent,  # noqa: PLW1509 - only prctl
    )
    threading.Thread(
        target=_relay, args=(proc.stdout, log, label, echo or print), name=f"relay-{label}", daemon=True
    ).start()
    return proc


def stop(proc: subprocess.Popen | None, timeout: float = 15) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Pair:
    """A worker and its beat: started together, stopped together."""

    def __init__(
        self,
        worker_args: list[str],
        beat_args: list[str],
        env: dict | None = None,
        *,
        log_dir: Path | None = None,
        echo: Callable[[str], None] | None = None,
    ):
        self.worker_args, self.beat_args, self.env = worker_args, beat_args, env
        self.log_dir, self.echo = log_dir, echo
        self.worker: subprocess.Popen | None = None
        self.beat: subprocess.Popen | None = None

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        log = self.log_dir / f"{name}.log" if self.log_dir else None
        return spawn(args, self.env, log=log, label=name, echo=self.echo)

    def start(self) -> None:
        self.worker = self._spawn("worker", self.worker_args)
        self.beat = self._spawn("beat", self.beat_args)

    def check(self) -> tuple[str, subprocess.Popen] | None:
        """One look: if either process ended, stop the other (beat never runs without its
        worker, nor a worker without its beat) and return the one that ended."""
        for name, proc in (("worker", self.worker), ("beat", self.beat)):
            if proc is not None and proc.poll() is not None:
                self.stop()
                return name, proc
        return None

    def stop(self) -> None:
        # Beat first: it sends no more tasks while the worker finishes the ones it holds.
        stop(self.beat)
        stop(self.worker)
