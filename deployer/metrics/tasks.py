"""Beat tasks of the metrics: thin, and safe to run twice (a scrape that overlaps another
cannot reuse its baseline; folding rebuilds minutes instead of adding to them).

Registered with the worker by deployer.tasks importing this module (Celery's autodiscovery
imports only <app>.tasks)."""

from celery import shared_task

from deployer.metrics.collect import scrape_all
from deployer.metrics.retention import downsample_and_expire

# A scrape runs every 10 s: one that has not started by the next is useless, and one stuck
# on a network call must end before it piles up behind the others.
SCRAPE_LIMIT = 60


@shared_task(name="deployer.scrape_metrics", soft_time_limit=SCRAPE_LIMIT, time_limit=SCRAPE_LIMIT + 10)
def scrape_metrics():
    return scrape_all()


@shared_task(name="deployer.downsample_metrics", soft_time_limit=300, time_limit=330)
def downsample_metrics():
    return downsample_and_expire()
