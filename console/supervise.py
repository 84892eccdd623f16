"""`make run`'s process supervision: the Celery worker and beat run as two child processes
that live and die together.

Beat embedded in a worker (``worker -B``) is a child of the worker's main process: killing
that process with SIGKILL orphans beat, and the next worker's beat makes two, each sending
every periodic task. Here beat is its own process, the pair is watched, and when either one
exits the other is stopped and both start again. Every child also gets SIGTERM if `make run`
itself dies (Linux ``PR_SET_PDEATHSIG``), so nothing outlives it.
"""

import ctypes
import logging
import signal
import subprocess
import sys
import threading

log = logging.getLogger(__name__)
PR_SET_PDEATHSIG = 1


def _die_with_parent():  # runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        except OSError:
            pass


def spawn(args: list[str], env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(args, env=env, preexec_fn=_die_with_parent)  # noqa: PLW1509 - only prctl


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

    def __init__(self, worker_args: list[str], beat_args: list[str], env: dict | None = None):
        self.worker_args, self.beat_args, self.env = worker_args, beat_args, env
        self.worker: subprocess.Popen | None = None
        self.beat: subprocess.Popen | None = None
        self.restarts = 0
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.worker = spawn(self.worker_args, self.env)
        self.beat = spawn(self.beat_args, self.env)

    def check(self) -> bool:
        """One look: if either process ended, stop the other and start both again.
        Returns True if it restarted them."""
        ended = [
            (name, p)
            for name, p in (("worker", self.worker), ("beat", self.beat))
            if p is not None and p.poll() is not None
        ]
        if not ended or self._stopping.is_set():
            return False
        for name, p in ended:
            log.warning(
                "Celery %s (pid %s) exited with %s; restarting the worker and beat together.", name, p.pid, p.returncode
            )
        stop(self.beat)
        stop(self.worker)
        self.restarts += 1
        self.start()
        return True

    def watch(self, interval: float = 1.0) -> None:
        def loop():
            while not self._stopping.wait(interval):
                self.check()

        self._thread = threading.Thread(target=loop, name="supervise-celery", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        stop(self.beat)
        stop(self.worker)
