"""A/B of the version search endpoint in one process, interleaved, on the last run's data:
``python -m bench.ab_search [rounds] [requests per round]``.

A = the endpoint as it was before the benchmark's fix (reverse() per row for ``url``), and the
view as it is with the related model's unused columns deferred ("defer only", a fix tried and
dropped: no gain); B = the code as it is. Interleaving keeps a busy, shared machine
from favouring one side."""

import os
import statistics
import sys
import time

from bench.run import bench_env

os.environ.update(bench_env())

PATH = "/api/v1/versions/?tag=team:team-07&page_size=50"


def main():
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.urls import reverse

    from console.accounts.services import token_create
    from console.api import paginated, valid
    from registry import selectors
    from registry.api import serializers, views

    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    per = int(sys.argv[2]) if len(sys.argv) > 2 else 50
    user = get_user_model().objects.get(username="bench-viewer")
    client = Client(HTTP_AUTHORIZATION=f"Bearer {token_create(user=user, name='ab').raw}")

    new_get, new_url = views.VersionSearchView.get, serializers.ModelVersionSerializer.get_url

    def deferred_get(self, request):
        filters = valid(views.VersionFilterSerializer, request.query_params)
        model_name = filters.pop("model")
        model = selectors.model_get(model_name) if model_name else None
        versions = selectors.version_list(model=model, **filters).defer(
            "model__description", "model__tags", "model__aliases"
        )
        return paginated(self, versions, serializers.ModelVersionSerializer)

    def old_url(self, obj):
        return reverse("api:version-detail", kwargs={"name": obj.model.name, "version": obj.version})

    variants = {"A (before)": (new_get, old_url), "B (after)": (new_get, new_url)}
    if os.environ.get("BENCH_AB_SPLIT"):
        variants = {**variants, "defer only": (deferred_get, old_url)}
    bodies = {}
    for label, (get, url) in variants.items():
        views.VersionSearchView.get, serializers.ModelVersionSerializer.get_url = get, url
        bodies[label] = client.get(PATH).content
    assert len(set(bodies.values())) == 1, "A and B answer differently"
    times = {label: [] for label in variants}
    for _ in range(rounds):
        for label, (get, url) in variants.items():
            views.VersionSearchView.get, serializers.ModelVersionSerializer.get_url = get, url
            t = time.process_time()  # CPU of this process: a busy machine slows the wall clock of both
            for _ in range(per):
                client.get(PATH)
            times[label].append((time.process_time() - t) / per * 1000)
    views.VersionSearchView.get, serializers.ModelVersionSerializer.get_url = new_get, new_url
    for label, ms in times.items():
        print(
            f"{label}: median {statistics.median(ms):.2f} ms CPU per request over {rounds} rounds of {per} "
            f"(min {min(ms):.2f}, max {max(ms):.2f})"
        )
    a, b = (statistics.median(v) for v in list(times.values())[:2])
    print(f"B/A = {b / a:.2f}; identical response bodies")


if __name__ == "__main__":
    main()
