"""How much CPU work outside the benchmark ran while it measured.

The machine's load average cannot say this: at concurrency 32 the bench's own servers, its load
client and PostgreSQL keep more runnable tasks than a 2-core machine has cores, so "load above the
core count" would flag every run. Instead the kernel's CPU accounting is split in two:

- the machine's busy time (``/proc/stat``: user, nice, system, irq, softirq, steal), and
- the CPU time of the bench's own process trees (this process and everything it started, and the
  PostgreSQL and Redis servers it talks to): ``utime + stime`` of every live process in those trees
  plus ``cutime + cstime``, the time of children already reaped, so a PostgreSQL backend that
  exits during the run is still counted (its postmaster reaped it).

The difference is work that competed with the bench: other users' tests, builds, indexers.
"""

import os
import time
from dataclasses import dataclass
from pathlib import Path

HZ = os.sysconf("SC_CLK_TCK")
# The servers whose work is the benchmark's own, though the bench did not start them.
SERVERS = ("postgres", "postmaster", "redis-server")
# Above this many cores' worth of outside work on average, the figures are called unreliable.
OUTSIDE_LIMIT_CORES = 0.25


def _busy_jiffies() -> int:
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return user + nice + system + irq + softirq + steal


def _processes() -> dict[int, tuple[str, int, int]]:
    """pid -> (command, parent pid, CPU jiffies of itself and its reaped children)."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:  # gone between listing and reading
            continue
        comm = raw[raw.index("(") + 1 : raw.rindex(")")]
        rest = raw[raw.rindex(")") + 2 :].split()
        # Fields after the command, from 0: state, ppid, ..., utime (11), stime, cutime, cstime.
        ppid = int(rest[1])
        jiffies = int(rest[11]) + int(rest[12]) + int(rest[13]) + int(rest[14])
        out[int(entry.name)] = (comm, ppid, jiffies)
    return out


def tree_jiffies(roots: set[int], procs: dict[int, tuple[str, int, int]] | None = None) -> int:
    """CPU jiffies of the processes ``roots`` and all their descendants, reaped children included."""
    procs = procs if procs is not None else _processes()
    children: dict[int, list[int]] = {}
    for pid, (_, ppid, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    total, todo, seen = 0, list(roots), set()
    while todo:
        pid = todo.pop()
        if pid in seen or pid not in procs:
            continue
        seen.add(pid)
        total += procs[pid][2]
        todo += children.get(pid, [])
    return total


def process_cpu_seconds(root: int) -> float:
    """CPU seconds used so far by ``root`` and its descendants (a gunicorn master and its workers)."""
    return tree_jiffies({root}) / HZ


def _own_jiffies(root: int) -> int:
    procs = _processes()
    roots = {root} | {
        pid for pid, (comm, ppid, _) in procs.items() if comm in SERVERS and procs.get(ppid, ("",))[0] not in SERVERS
    }
    return tree_jiffies(roots, procs)


@dataclass
class CpuShare:
    seconds: float
    machine_cores: float  # average cores busy on the whole machine
    bench_cores: float  # of which the bench's own trees
    outside_cores: float  # the rest: work that competed with the bench

    @property
    def reliable(self) -> bool:
        return self.outside_cores <= OUTSIDE_LIMIT_CORES

    def as_dict(self) -> dict:
        return {
            "seconds": round(self.seconds, 1),
            "machine_cores": round(self.machine_cores, 2),
            "bench_cores": round(self.bench_cores, 2),
            "outside_cores": round(self.outside_cores, 2),
        }


class CpuWatch:
    """``with CpuWatch() as w: ...`` then ``w.share``: the CPU split over the block."""

    def __init__(self, root: int | None = None):
        self.root = root or os.getpid()
        self.share: CpuShare | None = None

    def __enter__(self):
        self._t = time.monotonic()
        self._busy = _busy_jiffies()
        self._own = _own_jiffies(self.root)
        return self

    def __exit__(self, *exc):
        seconds = max(time.monotonic() - self._t, 1e-6)
        busy = (_busy_jiffies() - self._busy) / HZ / seconds
        own = (_own_jiffies(self.root) - self._own) / HZ / seconds
        # Accounting is sampled per tick, so the bench's share can round slightly above the total.
        self.share = CpuShare(seconds, busy, min(own, busy), max(busy - own, 0.0))
