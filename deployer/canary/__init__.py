"""Canary releases: the analysis that judges each step (pure)."""
