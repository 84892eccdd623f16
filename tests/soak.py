"""Two tests have a long version, run by `make soak` (MODELGATE_SOAK=1) once in CI, and a short
one that every `make test` pass runs: the same checks on less traffic. tests/test_mixed_load.py
(32 clients for 120 s, 30 s in the short one) and tests/test_api_properties.py (170 generated
requests per operation, 25 in the short one)."""

import os

SOAK = os.environ.get("MODELGATE_SOAK") == "1"


def sized(*, short: int, soak: int) -> int:
    return soak if SOAK else short
