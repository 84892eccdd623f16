"""The Celery app the benchmark's worker runs (``celery -A bench.probe worker``): Modelgate's
own app, plus a task_prerun/postrun hook that writes each task's start and end times to
Redis, so the benchmark can measure approval -> worker pick-up without touching app code."""

import os
import time

import redis
from celery.signals import task_postrun, task_prerun

from console.celery import app  # noqa: F401 - the app celery -A loads

_redis = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])


@task_prerun.connect
def _started(task_id=None, task=None, args=None, **kwargs):
    if task.name == "deployer.deploy_promotion" and args:
        _redis.set(f"bench:prerun:{args[0]}", repr(time.time()), ex=3600)


@task_postrun.connect
def _finished(task_id=None, task=None, args=None, **kwargs):
    if task.name == "deployer.deploy_promotion" and args:
        _redis.set(f"bench:postrun:{args[0]}", repr(time.time()), ex=3600)
