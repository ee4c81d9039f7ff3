"""Retry scheduling, queue mode, the worker's step and the sweeper, with the broker recorded.

The real worker on a real broker is exercised in test_queue_integration.py.
"""

from datetime import timedelta

import pytest
import requests
from django.utils import timezone
from kombu.exceptions import OperationalError

from accounts.tests.factories import AccountFactory
from datapusher.celery import app as celery_app
from destinations.tests.factories import DestinationFactory
from server.models import Attempt, Delivery
from server.services import deliveries_sweep, delivery_attempt_due, retry_delay
from server.tests.helpers import ingest

pytestmark = pytest.mark.django_db
SVIX_SCHEDULE = [5, 300, 1800, 7200, 18000, 36000, 36000]


@pytest.fixture
def broker(settings, monkeypatch):
    """A configured broker whose send_task calls are recorded instead of sent."""
    settings.CELERY_BROKER_URL = "redis://broker.invalid:6379/0"
    settings.DATAPUSHER_RETRY_SCHEDULE = SVIX_SCHEDULE
    settings.DATAPUSHER_RETRY_JITTER = 0.2
    sent = []
    monkeypatch.setattr(
        celery_app, "send_task", lambda name, args, countdown: sent.append((name, args, countdown))
    )
    return sent


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


@pytest.mark.parametrize(("retry_after", "expected"), [(120, 120), (0, 1), (10**9, 36000)])
def test_retry_after_is_honoured_within_bounds(settings, retry_after, expected):
    """A destination's Retry-After replaces the schedule, clamped to [1 s, the longest wait]."""
    settings.DATAPUSHER_RETRY_SCHEDULE = SVIX_SCHEDULE
    assert retry_delay(attempt_count=1, retry_after=retry_after) == expected


def test_no_retry_after_the_last_attempt_even_with_retry_after(settings):
    """Retry-After does not add attempts beyond the schedule."""
    settings.DATAPUSHER_RETRY_SCHEDULE = SVIX_SCHEDULE
    assert retry_delay(attempt_count=8, retry_after=5) is None


# --- sync mode with a broker ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "failure", [{"status": 503}, {"status": 500}, {"body": requests.ConnectionError("refused")}]
)
def test_sync_retryable_failure_is_pending_and_enqueued_with_the_first_wait(client, mocked, broker, failure):
    """5xx or a connection error: the answer says pending, a task is due in 5 s +/- 20 %."""
    account = AccountFactory()
    DestinationFactory(account=account, url="https://h.example.com/")
    mocked.post("https://h.example.com/", **failure)
    entry = ingest(client, account).json()["deliveries"][0]
    delivery = Delivery.objects.get()
    assert (entry["status"], delivery.status, delivery.attempt_count) == ("pending", "pending", 1)
    [(name, args, countdown)] = broker
    assert (name, args) == ("server.tasks.deliver", [delivery.pk])
    assert 4 - 0.5 <= countdown <= 6
    assert (
        timedelta(seconds=3.5) <= delivery.next_attempt_at - delivery.processed_at <= timedelta(seconds=6.1)
    )


def test_sync_429_waits_as_long_as_retry_after_says(client, mocked, broker):
    """429 with Retry-After: 120 is retried in 120 s."""
    account = AccountFactory()
    DestinationFactory(account=account, url="https://h.example.com/")
    mocked.post("https://h.example.com/", status=429, headers={"Retry-After": "120"})
    ingest(client, account)
    [(_, _, countdown)] = broker
    assert 118 <= countdown <= 120


@pytest.mark.parametrize("status", [400, 404, 410, 301])
def test_sync_permanent_failure_is_failed_and_not_enqueued(client, mocked, broker, status):
    """Other 4xx and 3xx are final: failed, nothing scheduled."""
    account = AccountFactory()
    DestinationFactory(account=account, url="https://h.example.com/")
    mocked.post("https://h.example.com/", status=status)
    assert ingest(client, account).json()["deliveries"][0]["status"] == "failed"
    assert broker == []
    assert Delivery.objects.get().next_attempt_at is None


def test_sync_refused_address_is_permanent(client, broker, settings):
    """An address the SSRF guard refuses is never retried."""
    account = AccountFactory()
    DestinationFactory(account=account, url="http://localhost:9/")
    settings.DATAPUSHER_ALLOWED_NETWORKS = []
    assert ingest(client, account).json()["deliveries"][0]["status"] == "failed"
    assert broker == []


def test_without_a_broker_retryable_failures_stay_failed(client, mocked, settings):
    """No broker: a 503 is failed (redeliver by hand), and nothing tries to reach a broker."""
    settings.CELERY_BROKER_URL = ""
    account = AccountFactory()
    DestinationFactory(account=account, url="https://h.example.com/")
    mocked.post("https://h.example.com/", status=503)
    assert ingest(client, account).json()["deliveries"][0]["status"] == "failed"


# --- queue mode -------------------------------------------------------------------------------------


def test_queue_mode_stores_pending_deliveries_and_enqueues_after_commit(
    client, broker, settings, django_capture_on_commit_callbacks
):
    """202, every delivery pending, nothing sent inline, one task per delivery once committed."""
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
    assert [args for _, args, _ in broker] == [[d.pk] for d in Delivery.objects.order_by("id")]
    assert [countdown for _, _, countdown in broker] == [0, 0, 0]
    assert Attempt.objects.count() == 0


def test_queue_mode_with_the_broker_down_still_accepts(
    client, settings, monkeypatch, django_capture_on_commit_callbacks
):
    """If the broker refuses, the deliveries stay pending for the sweeper; the sender still gets 202."""
    settings.DATAPUSHER_DELIVERY_MODE = "queue"
    settings.CELERY_BROKER_URL = "redis://broker.invalid:6379/0"
    tries = []

    def refuse(*args, **kwargs):
        tries.append(args)
        raise OperationalError("connection refused")

    monkeypatch.setattr(celery_app, "send_task", refuse)
    account = AccountFactory()
    DestinationFactory.create_batch(3, account=account)
    with django_capture_on_commit_callbacks(execute=True):
        response = ingest(client, account)
    assert response.status_code == 202
    assert list(Delivery.objects.values_list("status", flat=True)) == ["pending"] * 3
    assert len(tries) == 1  # one refusal is enough: no waiting on a dead broker per delivery


# --- the worker's step ------------------------------------------------------------------------------


def pending_delivery(**fields) -> Delivery:
    destination = DestinationFactory(url="https://h.example.com/")
    from server.models import Event

    event = Event.objects.create(account=destination.account, body='{"a": 1}')
    return Delivery.objects.create(
        event=event,
        destination=destination,
        url=destination.url,
        http_method="POST",
        next_attempt_at=fields.pop("next_attempt_at", timezone.now()),
        **fields,
    )


def test_worker_step_sends_a_due_delivery(mocked, broker):
    """Due and pending: sent once, succeeded, no retry."""
    delivery = pending_delivery()
    mocked.post("https://h.example.com/", status=200)
    assert delivery_attempt_due(delivery_pk=delivery.pk) is None
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempt_count, delivery.locked_until) == ("succeeded", 1, None)
    assert mocked.calls[0].request.body == b'{"a": 1}'


def test_worker_step_returns_the_wait_after_a_retryable_failure(mocked, broker):
    """A 500 on attempt 2: pending again, due after the schedule's second wait (5 min +/- 20 %)."""
    delivery = pending_delivery(attempt_count=1)
    mocked.post("https://h.example.com/", status=500)
    retry_in = delivery_attempt_due(delivery_pk=delivery.pk)
    assert 240 - 1 <= retry_in <= 360
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempt_count) == ("pending", 2)


def test_worker_step_fails_for_good_after_the_last_attempt(mocked, broker):
    """The eighth failed attempt is final."""
    delivery = pending_delivery(attempt_count=7)
    mocked.post("https://h.example.com/", status=500)
    assert delivery_attempt_due(delivery_pk=delivery.pk) is None
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempt_count, delivery.next_attempt_at) == ("failed", 8, None)


@pytest.mark.parametrize(
    "fields",
    [
        {"status": "succeeded"},
        {"status": "failed"},
        {"next_attempt_at": timezone.now() + timedelta(minutes=5)},
        {"locked_until": timezone.now() + timedelta(seconds=30)},
    ],
    ids=["already-succeeded", "failed-for-good", "not-due-yet", "leased-by-another-worker"],
)
def test_worker_step_sends_nothing_unless_pending_due_and_free(mocked, broker, fields):
    """Idempotent: a duplicate or early task does nothing."""
    delivery = pending_delivery(**fields)
    assert delivery_attempt_due(delivery_pk=delivery.pk) is None
    assert len(mocked.calls) == 0
    assert Attempt.objects.count() == 0


def test_worker_step_fails_a_delivery_whose_destination_was_deleted(broker):
    """A pending delivery whose destination is gone is failed, not retried for ever."""
    delivery = pending_delivery()
    delivery.destination.delete()
    assert delivery_attempt_due(delivery_pk=delivery.pk) is None
    delivery.refresh_from_db()
    assert (delivery.status, delivery.error) == ("failed", "destination deleted")


# --- the sweeper ------------------------------------------------------------------------------------


def test_sweeper_enqueues_only_overdue_unleased_pending_deliveries(broker):
    """Overdue and free: enqueued. Recent, leased, or finished: left alone."""
    now = timezone.now()
    overdue = pending_delivery(next_attempt_at=now - timedelta(minutes=10))
    pending_delivery(next_attempt_at=now - timedelta(seconds=10))
    pending_delivery(next_attempt_at=now - timedelta(minutes=10), locked_until=now + timedelta(seconds=30))
    pending_delivery(next_attempt_at=now - timedelta(minutes=10), status="succeeded")
    assert deliveries_sweep(overdue_seconds=300) == 1
    assert broker == [("server.tasks.deliver", [overdue.pk], 0)]
