"""Totals that tests hand to the terminal summary (tests/conftest.py), across xdist workers."""

import os
from pathlib import Path

SUMMARIES = "summaries"


def summary_dir(tmp_path_factory) -> Path:
    """Where a test writes totals for the terminal summary: the run's base temp dir, which the
    xdist workers' own dirs sit inside."""
    base = tmp_path_factory.getbasetemp()
    folder = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / SUMMARIES
    folder.mkdir(exist_ok=True)
    return folder
