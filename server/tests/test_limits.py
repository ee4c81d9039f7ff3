"""A destination's limits (rate_limit, max_in_flight) in the worker's step: a delivery over one is
put off, unsent, with no attempt spent, and published again when due.

The same against real worker processes and a receiver counting what it gets is in
test_limits_integration.py.
"""

import threading
import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from destinations.tests.factories import DestinationFactory
from server.models import Attempt, Delivery
from server.services import limits
from server.services.delivery import delivery_attempt_due
from server.services.dispatch import deliveries_dispatch
from server.tests.conftest import wait_until
from server.tests.helpers import ingest, pending_delivery
from server.tests.test_metrics import change, scrape

pytestmark = pytest.mark.django_db
DELAYED = "datapusher_deliveries_delayed_total"


def held_elsewhere(destination, *, expires_in: timedelta) -> Delivery:
    """A delivery to `destination` that another sender holds, its lease running out in `expires_in`."""
    return pending_delivery(
        destination=destination, lease_id=uuid.uuid4(), lease_expires_at=timezone.now() + expires_in
    )


def attempted(delivery: Delivery) -> Delivery:
    """`delivery` after a worker's step on it, as stored (a dispatcher had handed it over)."""
    Delivery.objects.filter(pk=delivery.pk).update(dispatched_at=timezone.now())
    delivery_attempt_due(delivery_pk=delivery.pk)
    delivery.refresh_from_db()
    return delivery


def assert_put_off(delivery: Delivery, *, error: str, after: timedelta, within: timedelta) -> None:
    """Pending, released, not marked handed over, no attempt spent, due in [after, within] from now."""
    now = timezone.now()
    assert (delivery.status, delivery.error, delivery.attempt_count) == ("pending", error, 0)
    assert (delivery.lease_id, delivery.lease_expires_at, delivery.dispatched_at) == (None, None, None)
    assert not Attempt.objects.filter(delivery=delivery).exists()
    assert now + after - timedelta(seconds=0.1) <= delivery.next_attempt_at <= now + within


def test_a_delivery_over_max_in_flight_is_put_off_with_no_attempt_spent(receiver):
    """With max_in_flight=1 and another delivery of the destination in flight, the worker sends
    nothing: the delivery is pending again, due 0.2 to 1 s later, and says why."""
    destination = DestinationFactory(url=receiver.url, max_in_flight=1)
    held_elsewhere(destination, expires_in=timedelta(seconds=60))
    delivery = attempted(pending_delivery(destination=destination))
    assert_put_off(
        delivery,
        error="delayed: destination max in flight (1); still pending",
        after=timedelta(seconds=0.2),
        within=timedelta(seconds=1),
    )
    assert receiver.requests == []


def test_a_lease_run_out_is_not_in_flight(receiver):
    """A delivery whose holder's lease ran out (a dead worker) does not count: the next is sent."""
    destination = DestinationFactory(url=receiver.url, max_in_flight=1)
    held_elsewhere(destination, expires_in=timedelta(seconds=-1))
    assert attempted(pending_delivery(destination=destination)).status == "succeeded"
    assert len(receiver.requests) == 1


def test_under_max_in_flight_the_delivery_is_sent(receiver):
    """With max_in_flight=2 and one other in flight, the delivery is sent."""
    destination = DestinationFactory(url=receiver.url, max_in_flight=2)
    held_elsewhere(destination, expires_in=timedelta(seconds=60))
    assert attempted(pending_delivery(destination=destination)).status == "succeeded"


def test_a_delivery_over_the_rate_limit_is_put_off_with_no_attempt_spent(receiver):
    """At rate_limit=1 (a second), the first delivery is sent and the second put off until the
    window has room again (within 1 s), plus up to a window more of spread."""
    destination = DestinationFactory(url=receiver.url, rate_limit=1)
    first = attempted(pending_delivery(destination=destination))
    second = attempted(pending_delivery(destination=destination))
    assert first.status == "succeeded"
    assert_put_off(
        second,
        error="delayed: destination rate limit (1/s); still pending",
        after=timedelta(0),
        within=timedelta(seconds=2),
    )
    assert len(receiver.requests) == 1


def test_the_ingest_sending_itself_is_not_limited(client, receiver):
    """Sync mode: the ingest's own send is not held back by the destination's limits."""
    destination = DestinationFactory(url=receiver.url, max_in_flight=1, rate_limit=0.001)
    held_elsewhere(destination, expires_in=timedelta(seconds=60))
    for _ in range(2):
        assert ingest(client, destination.account).json()["deliveries"][0]["status"] == "succeeded"
    assert len(receiver.requests) == 2


def test_a_put_off_delivery_is_published_again_once_due(receiver, published):
    """The dispatcher does not publish a delivery put off by a limit before it is due, and does once
    it is."""
    destination = DestinationFactory(url=receiver.url, max_in_flight=1)
    held_elsewhere(destination, expires_in=timedelta(seconds=60))
    delivery = attempted(pending_delivery(destination=destination))
    assert deliveries_dispatch(limit=10) == 0
    wait_until(lambda: deliveries_dispatch(limit=10) == 1, 3, "never published again")
    assert published == [delivery.pk]


def test_a_destination_without_limits_costs_no_query_and_no_rate_check(
    monkeypatch, django_assert_num_queries
):
    """Admitting deliveries to destinations without limits reads nothing and counts nothing."""
    monkeypatch.setattr(limits, "limiter", lambda *args: pytest.fail("the rate limiter was used"))
    deliveries = list(Delivery.objects.select_related("destination").filter(pk=pending_delivery().pk))
    with django_assert_num_queries(0):
        assert limits.deliveries_admit(deliveries=deliveries, lease_id=uuid.uuid4()) == deliveries


def test_a_failing_rate_storage_limits_nothing(receiver, settings, silent_port, caplog):
    """With the rate storage not answering, the check gives up, says so, and the delivery is sent."""
    settings.DATAPUSHER_RATE_LIMIT_STORAGE = f"redis://127.0.0.1:{silent_port}/0"
    destination = DestinationFactory(url=receiver.url, rate_limit=1)
    assert attempted(pending_delivery(destination=destination)).status == "succeeded"
    assert f"destination {destination.pk} rate limit not checked: the storage failed" in caplog.text


@pytest.mark.parametrize(
    ("rate", "window"),
    [
        (5, (5, 1)),
        (2.5, (5, 2)),
        (0.3, (3, 10)),
        (1 / 3, (1, 3)),
        (0.001, (1, 1000)),
        (10000, (10000, 1)),
        (9999.5, (9999, 1)),
        (1234.5678, (8641, 7)),
    ],
)
def test_a_rate_is_counted_in_the_shortest_whole_window(rate, window):
    """A rate a second as whole requests in whole seconds, the window short, its count bounded and
    never above the rate."""
    assert limits.rate_window(rate) == window
    requests, seconds = window
    assert requests / seconds <= rate


def test_each_delivery_put_off_is_counted_by_the_limit(client, receiver):
    """datapusher_deliveries_delayed_total counts the deliveries put off, by the limit that did."""
    by_rate = DestinationFactory(url=receiver.url, rate_limit=1)
    by_in_flight = DestinationFactory(url=receiver.url, max_in_flight=1)
    held_elsewhere(by_in_flight, expires_in=timedelta(seconds=60))
    before = scrape(client)
    for destination in (by_rate, by_rate, by_in_flight):
        attempted(pending_delivery(destination=destination))
    after = scrape(client)
    assert change(before, after, DELAYED, limit="rate_limit") == 1
    assert change(before, after, DELAYED, limit="max_in_flight") == 1


@pytest.mark.django_db(transaction=True)  # the worker's thread commits on its own connection
def test_the_in_flight_lock_does_not_hold_up_an_ingest(concurrent_writers, client, receiver, monkeypatch):
    """While a worker admits a delivery under its destination's row lock, an ingest to that
    destination stores and sends its own delivery: the lock (FOR NO KEY UPDATE) does not conflict
    with the key-share lock of the delivery's foreign key (FOR UPDATE would, and the ingest would
    wait out lock_timeout)."""
    destination = DestinationFactory(url=receiver.url, max_in_flight=5)
    account = destination.account  # holds its token
    delivery = pending_delivery(destination=destination, lease_id=uuid.uuid4())
    locked, release = threading.Event(), threading.Event()

    class Held:
        @staticmethod
        def now():
            locked.set()  # called inside the admission's transaction, the row locked
            release.wait(10)
            return timezone.now()

    monkeypatch.setattr(limits, "timezone", Held)

    def admit():
        try:
            limits._in_flight_admit(delivery=delivery, lease_id=delivery.lease_id)
        finally:
            connection.close()

    worker = threading.Thread(target=admit)
    worker.start()
    try:
        assert locked.wait(10)
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '3s'")
        response = ingest(client, account)
        assert (response.status_code, response.json()["deliveries"][0]["status"]) == (200, "succeeded")
    finally:
        release.set()
        worker.join(10)
