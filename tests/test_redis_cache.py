"""console.cache.RedisCache: Django's Redis cache with one client per pool (Django builds a
new redis.Redis for every operation). Against the machine's real Redis."""

import threading

import pytest
import redis

from console.cache import RedisCache

URL = "redis://127.0.0.1:6379/14"


@pytest.fixture
def cache():
    try:
        redis.Redis.from_url(URL).flushdb()
    except redis.ConnectionError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    made = RedisCache(URL, {"KEY_PREFIX": "t"})
    yield made
    made.clear()


def test_it_is_a_working_django_cache(cache):
    cache.set("a", {"x": 1}, 30)
    assert cache.get("a") == {"x": 1}
    assert cache.get_many(["a", "missing"]) == {"a": {"x": 1}}
    assert cache.get_or_set("g", 7) == 7
    assert cache.incr("g") == 8
    assert cache.add("a", "other") is False
    cache.delete("a")
    assert cache.get("a") is None


def test_one_client_serves_every_operation_and_every_thread(cache):
    cache.set("k", 1)
    first = cache._cache.get_client("k", write=True)
    assert cache._cache.get_client("k") is first

    errors = []

    def work(n):
        try:
            for i in range(50):
                cache.set(f"k{n}-{i}", i)
                assert cache.get(f"k{n}-{i}") == i
        except Exception as exc:  # collected: an assertion in a thread would be lost
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert cache._cache.get_client() is first
