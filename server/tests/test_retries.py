"""Retry scheduling, queue mode and the worker's step, with publishing to the broker recorded.

The dispatcher is exercised in test_dispatch.py, a real worker on a real broker in
test_queue_integration.py.
"""

from datetime import timedelta

import pytest
import requests
from django.utils import timezone

from accounts.tests.factories import AccountFactory
from destinations.tests.factories import DestinationFactory
from server.models import Attempt, Delivery
from server.services.delivery import delivery_attempt_due, retry_delay
from server.tests.helpers import ingest, pending_delivery

pytestmark = pytest.mark.django_db
SVIX_SCHEDULE = [5, 300, 1800, 7200, 18000, 36000, 36000]


@pytest.fixture
def broker(settings, published):
    """A configured broker (never reached: what is published is recorded), the Svix schedule."""
    settings.CELERY_BROKER_URL = "redis://broker.invalid:6379/0"
    settings.DATAPUSHER_RETRY_SCHEDULE = SVIX_SCHEDULE
    settings.DATAPUSHER_RETRY_JITTER = 0.2
    return published


# --- the schedule ---------------------------------------------------------------------------------


def test_default_schedule_is_eight_attempts_like_svix(settings):
    """After the first attempt: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h; then none."""
    settings.DATAPUSHER_RETRY_JITTER = 0
    assert settings.DATAPUSHER_RETRY_SCHEDULE == SVIX_SCHEDULE
    assert [retry_delay(attempt_count=n) for n in range(1, 9)] == [*SVIX_SCHEDULE, None]


def test_jitter_stays_within_twenty_percent(settings):
    """Each wait varies by at most +/-20 %, and does vary."""
    settings.DATAPUSHER_RETRY_JITTER = 0.2
    delays = {retry_delay(attempt_count=2) for _ in range(200)}
    assert all(240 <= delay <= 360 for delay in delays)
    assert len(delays) > 100


@pytest.mark.parametrize(("retry_after", "expected"), [(120, 120), (0, 1), (10**9, 3600)])
def test_retry_after_is_honoured_within_bounds(settings, retry_after, expected):
    """A destination's Retry-After replaces the schedule, clamped to [1 s, DATAPUSHER_RETRY_AFTER_MAX]."""
    settings.DATAPUSHER_RETRY_SCHEDULE = SVIX_SCHEDULE
    assert settings.DATAPUSHER_RETRY_AFTER_MAX == 3600
    assert retry_delay(attempt_count=1, retry_after=retry_after) == expected


def test_no_retry_after_the_last_attempt_even_with_retry_after(settings):
    """Retry-After does not add attempts beyond the schedule."""
    settings.DATAPUSHER_RETRY_SCHEDULE = SVIX_SCHEDULE
    assert retry_delay(attempt_count=8, retry_after=5) is None


# --- sync mode with a broker ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "failure", [{"status": 503}, {"status": 500}, {"body": requests.ConnectionError("refused")}]
)
def test_sync_retryable_failure_is_pending_due_after_the_first_wait(client, mocked, broker, failure):
    """5xx or a connection error: the answer says pending, due again in 5 s +/- 20 %, nothing
    published now (the dispatcher publishes it when due), the lease released."""
    account = AccountFactory()
    DestinationFactory(account=account, url="https://h.example.com/")
    mocked.post("https://h.example.com/", **failure)
    entry = ingest(client, account).json()["deliveries"][0]
    delivery = Delivery.objects.get()
    assert (entry["status"], delivery.status, delivery.attempt_count) == ("pending", "pending", 1)
    assert (delivery.lease_id, delivery.lease_expires_at, delivery.dispatched_at) == (None, None, None)
    assert timedelta(seconds=4) <= delivery.next_attempt_at - delivery.processed_at <= timedelta(seconds=6)
    assert broker == []


def test_sync_429_waits_as_long_as_retry_after_says(client, mocked, broker):
    """429 with Retry-After: 120 is due again in 120 s."""
    account = AccountFactory()
    DestinationFactory(account=account, url="https://h.example.com/")
    mocked.post("https://h.example.com/", status=429, headers={"Retry-After": "120"})
    ingest(client, account)
    delivery = Delivery.objects.get()
    assert delivery.next_attempt_at - delivery.processed_at == timedelta(seconds=120)


@pytest.mark.parametrize("status", [400, 404, 410, 301])
def test_sync_permanent_failure_is_failed_and_not_scheduled(client, mocked, broker, status):
    """Other 4xx and 3xx are final: failed, nothing scheduled."""
    account = AccountFactory()
    DestinationFactory(account=account, url="https://h.example.com/")
    mocked.post("https://h.example.com/", status=status)
    assert ingest(client, account).json()["deliveries"][0]["status"] == "failed"
    assert Delivery.objects.get().next_attempt_at is None


def test_sync_refused_address_is_permanent(client, broker, settings):
    """An address the SSRF guard refuses is never retried."""
    account = AccountFactory()
    DestinationFactory(account=account, url="http://localhost:9/")
    settings.DATAPUSHER_ALLOWED_NETWORKS = []
    assert ingest(client, account).json()["deliveries"][0]["status"] == "failed"
    assert Delivery.objects.get().next_attempt_at is None


def test_without_a_broker_retryable_failures_stay_failed(client, mocked, settings, published):
    """No broker: a 503 is failed (redeliver by hand), and nothing tries to reach a broker."""
    settings.CELERY_BROKER_URL = ""
    account = AccountFactory()
    DestinationFactory(account=account, url="https://h.example.com/")
    mocked.post("https://h.example.com/", status=503)
    assert ingest(client, account).json()["deliveries"][0]["status"] == "failed"
    assert published == []


# --- queue mode -------------------------------------------------------------------------------------


def test_queue_mode_stores_pending_deliveries_and_publishes_after_commit(
    client, broker, settings, django_capture_on_commit_callbacks
):
    """202, every delivery pending and marked handed over, nothing sent inline, each published once
    the transaction has committed."""
    settings.DATAPUSHER_DELIVERY_MODE = "queue"
    account = AccountFactory()
    destinations = [DestinationFactory(account=account, url=f"https://h{i}.example.com/") for i in range(3)]
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = ingest(client, account)
        assert broker == []  # not before the commit
    for callback in callbacks:
        callback()
    assert response.status_code == 202
    body = response.json()
    assert [
        (d["destination_id"], d["status"], d["status_code"], d["error"], d["duration_ms"])
        for d in body["deliveries"]
    ] == [(d.id, "pending", None, None, None) for d in destinations]
    stored = list(Delivery.objects.order_by("id"))
    assert broker == [d.pk for d in stored]
    assert all(d.dispatched_at is not None and d.lease_id is None for d in stored)
    assert Attempt.objects.count() == 0


def test_queue_mode_with_the_broker_down_still_accepts_and_leaves_them_to_the_dispatcher(
    client, broker, settings, monkeypatch, django_capture_on_commit_callbacks
):
    """If the broker does not take them, the deliveries stay pending with no handed-over mark (so
    the dispatcher publishes them next round), and the sender still gets 202."""
    settings.DATAPUSHER_DELIVERY_MODE = "queue"
    monkeypatch.setattr("server.broker.publish", lambda *, delivery_pks: 0)
    account = AccountFactory()
    DestinationFactory.create_batch(3, account=account)
    with django_capture_on_commit_callbacks(execute=True):
        response = ingest(client, account)
    assert response.status_code == 202
    assert list(Delivery.objects.values_list("status", "dispatched_at")) == [("pending", None)] * 3


# --- the worker's step ------------------------------------------------------------------------------


def test_worker_step_sends_a_due_delivery(mocked, broker):
    """Due and pending: sent once, succeeded, lease released."""
    delivery = pending_delivery()
    mocked.post("https://h.example.com/", status=200)
    delivery_attempt_due(delivery_pk=delivery.pk)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempt_count, delivery.lease_id, delivery.lease_expires_at) == (
        "succeeded",
        1,
        None,
        None,
    )
    assert mocked.calls[0].request.body == b'{"a": 1}'


def test_worker_step_leaves_a_retryable_failure_due_later_in_the_database(mocked, broker):
    """A 500 on attempt 2: pending again, due after the schedule's second wait (5 min +/- 20 %);
    no countdown held anywhere, nothing published (the dispatcher publishes it when due)."""
    delivery = pending_delivery(attempt_count=1, dispatched_at=timezone.now())
    mocked.post("https://h.example.com/", status=500)
    delivery_attempt_due(delivery_pk=delivery.pk)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempt_count, delivery.dispatched_at) == ("pending", 2, None)
    assert timedelta(seconds=239) <= delivery.next_attempt_at - timezone.now() <= timedelta(seconds=360)
    assert broker == []


def test_worker_step_fails_for_good_after_the_last_attempt(mocked, broker):
    """The eighth failed attempt is final."""
    delivery = pending_delivery(attempt_count=7)
    mocked.post("https://h.example.com/", status=500)
    delivery_attempt_due(delivery_pk=delivery.pk)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempt_count, delivery.next_attempt_at) == ("failed", 8, None)


@pytest.mark.parametrize(
    "fields",
    [
        {"status": "succeeded"},
        {"status": "failed"},
        # Times taken when the tests are collected, minutes before this one may run: a day ahead.
        {"next_attempt_at": timezone.now() + timedelta(days=1)},
        {
            "lease_id": "6f1c2a7e-0000-4000-8000-000000000001",
            "lease_expires_at": timezone.now() + timedelta(days=1),
        },
    ],
    ids=["already-succeeded", "failed-for-good", "not-due-yet", "leased-by-another-sender"],
)
def test_worker_step_sends_nothing_unless_pending_due_and_free(mocked, broker, fields):
    """Idempotent: a duplicate or early task does nothing."""
    delivery = pending_delivery(**fields)
    delivery_attempt_due(delivery_pk=delivery.pk)
    assert len(mocked.calls) == 0
    assert Attempt.objects.count() == 0


def test_worker_step_takes_over_an_expired_lease(mocked, broker):
    """A lease whose holder died (expired) does not block the delivery for ever."""
    delivery = pending_delivery(
        lease_id="6f1c2a7e-0000-4000-8000-000000000001",
        lease_expires_at=timezone.now() - timedelta(seconds=1),
    )
    mocked.post("https://h.example.com/", status=200)
    delivery_attempt_due(delivery_pk=delivery.pk)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempt_count, delivery.lease_id) == ("succeeded", 1, None)


def test_worker_step_fails_a_delivery_whose_destination_was_deleted(broker):
    """A pending delivery whose destination is gone is failed, not retried for ever."""
    delivery = pending_delivery()
    delivery.destination.delete()
    delivery_attempt_due(delivery_pk=delivery.pk)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.error, delivery.lease_id) == ("failed", "destination deleted", None)
