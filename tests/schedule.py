"""The longest test files first.

xdist hands out whole files (`--dist loadfile`, so a file's module-scoped servers start on
one worker only) in collection order (`--no-loadscope-reorder`). A long file handed out
last keeps one worker busy while the other has finished; handed out first, the short files
fill in around it. How long each file took is kept in pytest's cache at the end of a run of
the whole suite; a file with no figure yet goes first if it holds `slow` tests or is named
in LONG.
"""

from collections import defaultdict

import pytest

KEY = "modelgate/seconds-per-file"
# Long without `slow` tests (many cases, servers started in-process, real models): with no
# figures yet (a clean clone: CI's first pass), these go first too.
LONG = {
    "tests/test_api_properties.py",
    "tests/test_tfserving_conformance.py",
    "tests/test_kubeapi_server.py",
    "tests/test_kubernetes_backend.py",
    "tests/test_local_server.py",
    "tests/test_keras_logging.py",
}
UNMEASURED_LONG = 10_000.0  # seconds: before every measured file
_seconds: dict[str, float] = defaultdict(float)


def _file(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


@pytest.hookimpl(trylast=True)  # after pytest-django's own ordering, which this keeps within a file
def pytest_collection_modifyitems(config, items):
    cache = getattr(config, "cache", None)
    measured = cache.get(KEY, {}) if cache is not None else {}
    first: dict[str, int] = {}
    long: set[str] = set(LONG)
    for index, item in enumerate(items):
        first.setdefault(_file(item.nodeid), index)
        if item.get_closest_marker("slow"):
            long.add(_file(item.nodeid))

    def cost(file: str) -> float:
        return measured.get(file, UNMEASURED_LONG if file in long else 0.0)

    items.sort(key=lambda item: (-cost(_file(item.nodeid)), first[_file(item.nodeid)]))


def pytest_runtest_logreport(report):
    # Under xdist the controller gets every worker's reports: setup, call and teardown.
    _seconds[_file(report.nodeid)] += report.duration


def _whole_suite(config) -> bool:
    """A run of everything (`make test`): a file's figure from a run of a few of its tests would be
    too small."""
    option = config.option
    return (
        config.args_source == pytest.Config.ArgsSource.TESTPATHS
        and not (option.keyword or option.markexpr or option.deselect or getattr(option, "lf", False))
        and not hasattr(config, "workerinput")  # a worker's figures reach the controller, which keeps them
    )


def pytest_sessionfinish(session):
    cache = getattr(session.config, "cache", None)
    if cache is None or not _seconds or not _whole_suite(session.config):
        return
    cache.set(KEY, {**cache.get(KEY, {}), **{file: round(s, 1) for file, s in _seconds.items()}})
