"""Queued delivery end to end: real worker and dispatcher processes, a real broker, PostgreSQL, a real
receiver — and the faults of a bad day: a silent broker, a flushed broker, a killed worker, a retry
racing a worker.

Skipped without PostgreSQL as the database or without the broker; CI runs them
(DATAPUSHER_REQUIRE_SERVICES=1 turns a missing broker into a failure).
"""

import threading
import time
import uuid
from datetime import timedelta

import pytest
import redis
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from accounts.tests.factories import AccountFactory
from destinations.tests.factories import DestinationFactory
from server.models import Attempt, Delivery, Event
from server.tests.conftest import wait_until
from server.tests.helpers import ingest


def statuses() -> list[str]:
    return list(Delivery.objects.order_by("id").values_list("status", flat=True))


def answer(handler, status: int) -> None:
    handler.send_response(status)
    handler.send_header("Content-Length", "0")
    handler.end_headers()


def stalled_delivery(client, worker, dispatcher, receiver) -> tuple[Delivery, threading.Event]:
    """One delivery, queued and taken by a worker, whose request the receiver holds until `release`
    is set and then answers 503 (every later request: 200 at once). Returns (delivery, release)."""
    arrived, release = threading.Event(), threading.Event()

    def respond(handler):
        if not arrived.is_set():
            arrived.set()
            release.wait(30)
            answer(handler, 503)
        else:
            answer(handler, 200)

    receiver.respond = respond
    worker()
    dispatcher()
    account = AccountFactory()
    DestinationFactory(account=account, url=receiver.url)
    ingest(client, account)
    assert arrived.wait(20)
    return Delivery.objects.get(), release


@pytest.mark.parametrize("broker_url", ["redis", "rabbitmq"], indirect=True)
def test_queued_delivery_succeeds(client, worker, receiver):
    """202 with pending deliveries at once; the worker delivers, signed, and logs success."""
    worker()
    account = AccountFactory()
    destinations = [DestinationFactory(account=account, url=f"{receiver.url}/{i}") for i in range(3)]
    response = ingest(client, account)
    assert response.status_code == 202
    assert [d["status"] for d in response.json()["deliveries"]] == ["pending"] * 3
    wait_until(lambda: statuses() == ["succeeded"] * 3, 20, f"deliveries: {statuses()}")
    assert sorted(r.path for r in receiver.requests) == ["/0", "/1", "/2"]
    for received in receiver.requests:
        destination = next(d for d in destinations if d.url.endswith(received.path))
        assert received.body == b'{"a": 1}'
        Webhook(destination.signing_secret).verify(received.body, received.headers)


def test_failure_then_success_is_retried_by_the_dispatcher(client, worker, dispatcher, receiver):
    """A receiver answering 500 then 200: the delivery waits in the database (due 1 s later), the
    dispatcher publishes it when due, and the second attempt succeeds with the same webhook-id."""
    answers = iter([500, 200])
    receiver.respond = lambda handler: answer(handler, next(answers))
    worker()
    dispatcher()
    account = AccountFactory()
    DestinationFactory(account=account, url=receiver.url)
    ingest(client, account)
    wait_until(lambda: statuses() == ["succeeded"], 20, f"deliveries: {statuses()}")
    delivery = Delivery.objects.get()
    assert delivery.attempt_count == 2
    assert list(delivery.attempts.values_list("status_code", flat=True)) == [500, 200]
    first, second = receiver.requests
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == str(delivery.delivery_id)
    assert second.headers["webhook-timestamp"] >= first.headers["webhook-timestamp"]


def test_failing_destination_ends_failed_after_the_schedule(client, worker, dispatcher, receiver):
    """Always 503: 1 + 3 attempts (schedule 1,1,1), then failed for good."""
    receiver.respond = lambda handler: answer(handler, 503)
    worker()
    dispatcher()
    account = AccountFactory()
    DestinationFactory(account=account, url=receiver.url)
    ingest(client, account)
    wait_until(lambda: statuses() == ["failed"], 30, f"deliveries: {statuses()}")
    assert Delivery.objects.get().attempt_count == 4
    assert len(receiver.requests) == 4


@pytest.mark.parametrize("broker_url", ["redis", "rabbitmq"], indirect=True)
def test_worker_killed_mid_delivery_with_default_settings_delivers_all_within_60s(
    client, worker, dispatcher, receiver
):
    """SIGKILL while three deliveries are in flight, every setting at its production default: the
    lease runs out, the dispatcher hands them to a new worker, and all three succeed within 60 s of
    the kill (at least once: each receiver saw its webhook-id twice)."""
    held = threading.Event()
    first_seen: set[str] = set()

    def slow_first_time(handler):
        if handler.path not in first_seen:
            first_seen.add(handler.path)
            held.wait(30)
        answer(handler, 200)

    receiver.respond = slow_first_time
    doomed = worker(defaults=True)
    dispatcher(defaults=True)
    account = AccountFactory()
    for i in range(3):
        DestinationFactory(account=account, url=f"{receiver.url}/{i}")
    assert ingest(client, account).status_code == 202
    wait_until(lambda: len(first_seen) == 3, 20, f"the deliveries never started:\n{doomed.output()}")
    doomed.kill()
    killed_at = time.monotonic()
    held.set()
    assert statuses() == ["pending"] * 3
    worker(defaults=True)
    wait_until(lambda: statuses() == ["succeeded"] * 3, 60, f"deliveries: {statuses()}")
    assert time.monotonic() - killed_at < 60
    by_path: dict[str, list[str]] = {}
    for received in receiver.requests:
        by_path.setdefault(received.path, []).append(received.headers["webhook-id"])
    assert sorted(by_path) == ["/0", "/1", "/2"]
    assert all(len(ids) == 2 and len(set(ids)) == 1 for ids in by_path.values())


def test_broker_flush_is_recovered_within_10s(client, worker, dispatcher, receiver, queue_mode):
    """Messages lost from the broker (flushed) before any worker took them: the database still says
    pending, and once the broker's queue is empty the dispatcher hands them over again — all
    delivered within 10 s of the flush."""
    account = AccountFactory()
    DestinationFactory.create_batch(2, account=account, url=receiver.url)
    assert ingest(client, account).status_code == 202
    redis.Redis.from_url(queue_mode).flushdb()
    flushed_at = time.monotonic()
    worker()
    dispatcher()
    wait_until(lambda: statuses() == ["succeeded", "succeeded"], 10, f"deliveries: {statuses()}")
    assert time.monotonic() - flushed_at < 10
    assert len(receiver.requests) == 2


def test_a_silent_broker_does_not_hold_the_ingest(
    client, settings, worker, dispatcher, receiver, silent_broker
):
    """The broker accepts connections and never answers: the ingest still answers 202 within 2 s
    (publishing gives up after 1 s; the next ingest does not even try), the event is stored, and the
    dispatcher publishes it once the broker is back."""
    settings.CELERY_BROKER_URL = silent_broker.url
    worker()  # consumes from the broker itself
    dispatcher(CELERY_BROKER_URL=silent_broker.url)  # publishes through the silent link
    silent_broker.pause()
    account = AccountFactory()
    DestinationFactory(account=account, url=receiver.url)
    for _ in range(2):
        started = time.monotonic()
        response = ingest(client, account)
        assert (response.status_code, time.monotonic() - started < 2) == (202, True)
    assert Event.objects.count() == 2
    assert statuses() == ["pending"] * 2
    time.sleep(2)
    assert receiver.requests == []
    silent_broker.resume()
    wait_until(lambda: statuses() == ["succeeded"] * 2, 15, f"deliveries: {statuses()}")
    assert len(receiver.requests) == 2


def test_retry_taking_over_a_stalled_worker_is_never_undone(client, api_client, worker, dispatcher, receiver):
    """A worker's request stalls past its lease; a manual retry takes the delivery over (202), another
    worker thread sends it and it succeeds; then the stalled request gets its 503. That late answer
    is logged and counted, but the delivery stays succeeded and is never sent again."""
    delivery, release = stalled_delivery(client, worker, dispatcher, receiver)
    busy = api_client.post(f"/api/deliveries/{delivery.delivery_id}/retry/")
    assert busy.status_code == 409  # the worker's lease still holds
    # The worker stalls past its lease (a long GC pause, a slow disk): the lease runs out.
    Delivery.objects.filter(pk=delivery.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    retried = api_client.post(f"/api/deliveries/{delivery.delivery_id}/retry/")
    assert (retried.status_code, retried.json()["status"]) == (202, "pending")
    wait_until(lambda: statuses() == ["succeeded"], 15, f"deliveries: {statuses()}")
    release.set()
    wait_until(lambda: Attempt.objects.count() == 2, 15, "the stalled attempt was never logged")
    time.sleep(3)  # a retry that wrongly followed the late 503 would be due after 1 s
    delivery.refresh_from_db()
    assert (delivery.status, delivery.last_status_code, delivery.next_attempt_at) == ("succeeded", 200, None)
    assert delivery.attempt_count == Attempt.objects.count() == 2
    assert sorted(Attempt.objects.values_list("status_code", flat=True)) == [200, 503]
    assert len(receiver.requests) == 2


def test_a_retry_while_a_worker_sends_is_refused_and_the_delivery_ends_succeeded(
    client, api_client, worker, dispatcher, receiver
):
    """POST /retry/ while a worker holds the delivery: 409; the worker's 503 schedules the next
    attempt, which succeeds; the counts agree with the log and nothing is sent after the success."""
    delivery, release = stalled_delivery(client, worker, dispatcher, receiver)
    assert api_client.post(f"/api/deliveries/{delivery.delivery_id}/retry/").status_code == 409
    release.set()
    wait_until(lambda: statuses() == ["succeeded"], 20, f"deliveries: {statuses()}")
    time.sleep(2)
    delivery.refresh_from_db()
    assert delivery.attempt_count == Attempt.objects.count() == 2
    assert len(receiver.requests) == 2


@pytest.mark.parametrize(
    "left_behind",
    [
        {"lease_id": uuid.uuid4(), "lease_expires_at": timezone.now() - timedelta(seconds=1)},
        {"lease_id": None, "lease_expires_at": None},
    ],
    ids=["sync-ingest-killed-mid-send", "queue-ingest-killed-before-publishing"],
)
def test_a_killed_ingest_leaves_nothing_stranded(worker, dispatcher, receiver, queue_mode, left_behind):
    """A web process killed mid-ingest leaves a pending delivery: under its own lease, run out (sync
    mode, killed while sending), or stored but never published (queue mode, killed between commit
    and publish). The dispatcher finds it and a worker sends it."""
    account = AccountFactory()
    destination = DestinationFactory(account=account, url=receiver.url)
    event = Event.objects.create(account=account, body='{"a": 1}')
    Delivery.objects.create(
        event=event,
        destination=destination,
        url=destination.url,
        http_method="POST",
        next_attempt_at=timezone.now(),
        **left_behind,
    )
    worker()
    dispatcher()
    wait_until(lambda: statuses() == ["succeeded"], 15, f"deliveries: {statuses()}")
    assert len(receiver.requests) == 1
