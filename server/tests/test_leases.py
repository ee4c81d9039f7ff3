"""Leases: every send holds one, and an outcome is written only by its holder.

The same races against a real worker process are in test_queue_integration.py.
"""

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from server.models import Attempt, Delivery
from server.services.delivery import deliveries_claim, deliveries_send, event_payloads
from server.tests.helpers import pending_delivery

pytestmark = pytest.mark.django_db
URL = "https://h.example.com/"


def claim(delivery: Delivery) -> tuple[uuid.UUID, list[Delivery]]:
    lease_id = uuid.uuid4()
    return lease_id, deliveries_claim(deliveries=Delivery.objects.filter(pk=delivery.pk), lease_id=lease_id)


def expire(delivery: Delivery) -> None:
    """Its holder's lease runs out (the holder died, or stalled past it)."""
    Delivery.objects.filter(pk=delivery.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))


def taken_over(delivery: Delivery) -> tuple[uuid.UUID, list[Delivery], uuid.UUID, list[Delivery]]:
    """A worker claims the delivery, its lease runs out, and a retry claims it: (worker's lease, what
    the worker holds, retry's lease, what the retry holds)."""
    worker_lease, worker_claimed = claim(delivery)
    expire(delivery)
    return worker_lease, worker_claimed, *claim(delivery)


def send(lease_id: uuid.UUID, claimed: list[Delivery]) -> None:
    payloads = event_payloads(events=(d.event for d in claimed))
    deliveries_send(deliveries=claimed, lease_id=lease_id, payloads=payloads)


def test_a_held_delivery_cannot_be_claimed_again():
    """While one sender holds the lease, a second claim gets nothing."""
    delivery = pending_delivery()
    _, first = claim(delivery)
    _, second = claim(delivery)
    assert ([d.pk for d in first], second) == ([delivery.pk], [])


def test_an_expired_lease_can_be_taken_over():
    """A lease past its expiry (its holder died or stalled) no longer protects the delivery."""
    delivery = pending_delivery()
    claim(delivery)
    expire(delivery)
    lease_id, taken = claim(delivery)
    assert [d.lease_id for d in taken] == [lease_id]


def test_a_stale_senders_failure_never_moves_a_succeeded_delivery_back(mocked, settings):
    """A worker's lease runs out mid-request; a retry takes over and succeeds; then the worker's
    503 arrives. It is logged as an attempt and counted, but the delivery stays succeeded, not
    pending again — so it is never sent after its success."""
    settings.CELERY_BROKER_URL = "redis://broker.invalid:6379/0"  # a 503 would be retried
    delivery = pending_delivery()
    worker_lease, worker_claimed, retry_lease, retry_claimed = taken_over(delivery)
    mocked.post(URL, status=200)
    send(retry_lease, retry_claimed)
    mocked.replace("POST", URL, status=503)
    send(worker_lease, worker_claimed)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.last_status_code, delivery.next_attempt_at, delivery.lease_id) == (
        "succeeded",
        200,
        None,
        None,
    )
    assert list(Attempt.objects.values_list("status_code", flat=True)) == [200, 503]
    assert delivery.attempt_count == Attempt.objects.count() == 2
    assert worker_claimed[0].status == "succeeded"  # the stale sender sees the truth, not its own write


def test_a_stale_sender_cannot_release_the_new_holders_lease(mocked):
    """The stale sender's write does not clear the lease the new holder still has."""
    delivery = pending_delivery()
    worker_lease, worker_claimed, retry_lease, _ = taken_over(delivery)
    mocked.post(URL, status=500)
    send(worker_lease, worker_claimed)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.lease_id, delivery.attempt_count) == ("pending", retry_lease, 1)


def test_retry_of_a_delivery_being_sent_is_409(api_client):
    """POST /retry/ while another sender holds the delivery: 409, nothing sent, nothing changed."""
    delivery = pending_delivery()
    claim(delivery)
    response = api_client.post(f"/api/deliveries/{delivery.delivery_id}/retry/")
    assert response.status_code == 409
    assert response.json() == {
        "detail": "This delivery is being sent right now; try again when that attempt has ended."
    }
    assert Attempt.objects.count() == 0


def test_redeliver_skips_deliveries_being_sent_and_takes_stranded_pending_ones(api_client, mocked):
    """An event's redelivery sends its failed deliveries and the pending ones nobody holds (left by
    a crash), and skips one that is being sent right now."""
    stranded = pending_delivery()
    event = stranded.event
    busy = Delivery.objects.create(
        event=event,
        destination=stranded.destination,
        url=URL,
        http_method="POST",
        next_attempt_at=timezone.now(),
    )
    claim(busy)
    mocked.post(URL, status=200)
    response = api_client.post(f"/api/events/{event.event_id}/redeliver/")
    assert response.status_code == 200
    assert [(d["delivery_id"], d["status"]) for d in response.json()] == [
        (str(stranded.delivery_id), "succeeded")
    ]
    busy.refresh_from_db()
    assert (busy.status, busy.attempt_count) == ("pending", 0)


def test_a_stale_senders_success_still_counts_when_nobody_holds_the_delivery(mocked):
    """The worker's lease ran out and the dispatcher cleared it (to hand the delivery over again),
    but no one has taken it yet when the worker's 200 arrives: the delivery is succeeded — a forward
    move — and the message handed over finds it done instead of sending it a second time."""
    delivery = pending_delivery()
    worker_lease, worker_claimed = claim(delivery)
    expire(delivery)
    Delivery.objects.filter(pk=delivery.pk).update(lease_id=None, lease_expires_at=None)  # the dispatcher
    mocked.post(URL, status=200)
    send(worker_lease, worker_claimed)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempt_count, delivery.last_status_code) == ("succeeded", 1, 200)
