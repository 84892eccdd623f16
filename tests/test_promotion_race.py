"""32 clients request the same promotion at once. The one-open-request rule holds and every
client gets a defined answer: its request (the newer supersedes the older) or a 409, never a
500. Runs on PostgreSQL (CI's first run, DATABASE_URL set), where the race is real."""

import threading
from collections import Counter

import pytest
from django.db import connection, connections

from registry.promotions.models import PromotionRequest

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="a real write race needs PostgreSQL; CI's first run (DATABASE_URL set) runs this",
    ),
]
R = PromotionRequest
CLIENTS = 32


def test_32_simultaneous_requests_for_one_promotion_give_no_500_and_one_open_request(api, engineer, iris, staging):
    clients = [api(engineer) for _ in range(CLIENTS)]
    barrier = threading.Barrier(CLIENTS)
    answers = []

    def request(client):
        try:
            barrier.wait()
            response = client.post(
                "/api/v1/promotions/",
                {"model": "iris", "version": 2, "environment": "staging", "justification": "nightly"},
                format="json",
            )
            answers.append((response.status_code, response.json()))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=request, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)

    statuses = Counter(status for status, _ in answers)
    assert len(answers) == CLIENTS
    assert set(statuses) <= {201, 409}, [body for status, body in answers if status not in (201, 409)][:3]
    assert all(body["error"] == "conflict" for status, body in answers if status == 409)
    open_requests = PromotionRequest.objects.filter(model=iris, environment=staging, state__in=R.OPEN)
    assert open_requests.count() == 1
    created = [body["id"] for status, body in answers if status == 201]
    assert max(created) == open_requests.get().pk  # the newest request is the one left open
    superseded = PromotionRequest.objects.filter(pk__in=created, state=R.CANCELLED)
    assert superseded.count() == len(created) - 1
    assert all(r.superseded_by_id is not None for r in superseded)
