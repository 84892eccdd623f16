"""Judging a canary step (owner: H1). Only the window type lives here in this branch: the
per-track metrics (``deployer.metrics.series.track_window``) return it, and H1's ``judge``
reads it."""

from dataclasses import dataclass


@dataclass(frozen=True)
class TrackWindow:
    """One track's traffic over a step's window."""

    requests: int
    errors: int
    p95_ms: float | None
