"""A destination's limits against real worker processes: two workers (4 threads each), the dispatcher,
PostgreSQL, the broker, and a receiver counting what it gets — however many deliveries are ready at
once, the destination gets no more than its limits, and every delivery succeeds, none failed or sent
twice.

Skipped without PostgreSQL as the database or without the broker, as test_queue_integration.py.
"""

import threading
import time
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.tests.factories import AccountFactory
from destinations.tests.factories import DestinationFactory
from server.models import Attempt, Delivery, Event
from server.tests.conftest import wait_until
from server.tests.helpers import answer, ingest
from server.tests.test_queue_integration import statuses

pytestmark = pytest.mark.timeout(90)


def all_succeeded(count: int) -> None:
    """Wait until `count` deliveries have succeeded, each on its first attempt (none put off spent one)."""
    wait_until(lambda: statuses() == ["succeeded"] * count, 45, f"deliveries: {statuses()}")
    assert Attempt.objects.count() == count
    assert set(Delivery.objects.values_list("attempt_count", flat=True)) == {1}


class Holding:
    """A receiver's `respond` that holds each request `seconds` and counts those held at once (counted
    down before it answers: a sender cannot have heard the answer yet)."""

    def __init__(self, seconds: float):
        self.seconds, self.now, self.most, self.lock = seconds, 0, 0, threading.Lock()

    def __call__(self, handler) -> None:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
        time.sleep(self.seconds)
        with self.lock:
            self.now -= 1
        answer(200)(handler)


def start(worker: Callable, dispatcher: Callable, **overrides: str) -> None:
    """Two worker processes (8 threads between them) and a dispatcher."""
    worker(**overrides)
    worker(**overrides)
    dispatcher(**overrides)


def test_max_in_flight_holds_across_workers_redeliveries_and_a_recovery(
    client, api_client, worker, dispatcher, receiver
):
    """max_in_flight=2, 30 ingests, then 10 redeliveries, then a recovery of all 30, to a receiver
    holding each request 0.3 s: it never holds more than 2 at once (and does hold 2), and all 70
    sends succeed at their first try."""
    holding = Holding(0.3)
    receiver.respond = holding
    start(worker, dispatcher)
    account = AccountFactory()
    destination = DestinationFactory(account=account, url=receiver.url, max_in_flight=2)
    for _ in range(30):
        assert ingest(client, account).status_code == 202
    all_succeeded(30)
    for event in Event.objects.order_by("received_at")[:10]:
        redelivered = api_client.post(f"/api/events/{event.event_id}/redeliver/?all=true")
        assert redelivered.status_code == 202
    wait_until(lambda: len(receiver.requests) == 40, 45, f"received {len(receiver.requests)}")
    wait_until(lambda: statuses() == ["succeeded"] * 30, 10, f"deliveries: {statuses()}")
    assert Attempt.objects.count() == 40
    now = timezone.now()
    recovered = api_client.post(
        f"/api/destinations/{destination.pk}/recover/",
        {
            "since": (now - timedelta(hours=1)).isoformat(),
            "until": now.isoformat(),
            "status": ["succeeded"],
            "dry_run": False,
        },
        format="json",
    )
    assert (recovered.status_code, recovered.json()["count"]) == (202, 30)
    wait_until(lambda: len(receiver.requests) == 70, 45, f"received {len(receiver.requests)}")
    wait_until(lambda: statuses() == ["succeeded"] * 30, 10, f"deliveries: {statuses()}")
    assert Attempt.objects.count() == 70
    assert holding.most == 2


def most_in_any(seconds: float, times: list[float]) -> int:
    """The most of `times` that fall in any span of `seconds`."""
    times = sorted(times)
    return max(sum(1 for t in times[i:] if t < first + seconds) for i, first in enumerate(times))


def test_rate_limit_holds_across_workers(client, queue_mode, worker, dispatcher, receiver):
    """rate_limit=5 (a second), counted in Redis (the broker's) by two workers, 20 ingests at once: the
    receiver gets at most 5 in any 0.9 s (the 0.1 s of slack: a request arrives a little after the
    worker counted it, not always as little), and all 20 succeed at their first try."""
    arrivals: list[float] = []

    def respond(handler):
        arrivals.append(time.monotonic())
        answer(200)(handler)

    receiver.respond = respond
    start(worker, dispatcher, REDIS_URL=queue_mode)
    account = AccountFactory()
    DestinationFactory(account=account, url=receiver.url, rate_limit=5)
    for _ in range(20):
        assert ingest(client, account).status_code == 202
    all_succeeded(20)
    assert len(arrivals) == 20
    assert most_in_any(0.9, arrivals) == 5
