"""Profile one endpoint in process: ``python -m bench.profile_search [path] [n]``.

Uses the data of the last benchmark run (modelgate_bench). Prints pyinstrument's tree when it
is installed, cProfile's top functions otherwise, and the queries of one request."""

import os
import sys
import time

from bench.run import bench_env

os.environ.update(bench_env())


def main():
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from console.accounts.services import token_create

    path = sys.argv[1] if len(sys.argv) > 1 else "/api/v1/versions/?tag=team:team-07&page_size=50"
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    user = get_user_model().objects.get(username="bench-viewer")
    client = Client(HTTP_AUTHORIZATION=f"Bearer {token_create(user=user, name='profile').raw}")
    assert client.get(path).status_code == 200
    with CaptureQueriesContext(connection) as qc:
        client.get(path)
    for q in qc.captured_queries:
        print(f"{q['time']}s  {q['sql'][:300]}")
    t = time.perf_counter()
    for _ in range(n):
        client.get(path)
    print(f"{(time.perf_counter() - t) / n * 1000:.2f} ms per request in process")
    try:
        from pyinstrument import Profiler
    except ImportError:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        prof.enable()
        for _ in range(n):
            client.get(path)
        prof.disable()
        pstats.Stats(prof).sort_stats("cumulative").print_stats(45)
        return
    profiler = Profiler(interval=0.0005)
    profiler.start()
    for _ in range(n):
        client.get(path)
    profiler.stop()
    print(profiler.output_text(unicode=True, color=False, show_all=False))


if __name__ == "__main__":
    main()
