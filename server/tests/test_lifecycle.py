"""Pause, resume, disable, and the receiver in control, against a real local receiver: 410 Gone and
`webhook-delivery: disable` turn a destination off, 429/503 with Retry-After delay without spending
an attempt, a disabled destination's deliveries are kept paused, and resuming sends them."""

import email.utils
import json
import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from accounts.tests.factories import AccountFactory
from destinations.models import Destination
from destinations.services import destination_disable
from destinations.tests.factories import DestinationFactory
from server.models import Attempt, Delivery
from server.services import delivery as delivery_module
from server.services import ingest as ingest_module
from server.services.delivery import delivery_attempt_due
from server.services.dispatch import deliveries_dispatch
from server.services.lifecycle import destination_resume
from server.tests.helpers import ASKED, GONE, answer, ingest, pending_delivery

pytestmark = pytest.mark.django_db
ALERTS = "server.services.alerts"


@pytest.fixture
def destination(receiver):
    return DestinationFactory(account=AccountFactory(), url=f"{receiver.url}/in", headers={})


def _disabled(destination: Destination, reason: str = "") -> Destination:
    Destination.objects.filter(pk=destination.pk).update(enabled=False, disabled_reason=reason)
    destination.enabled, destination.disabled_reason = False, reason  # its account keeps its token
    return destination


def _paused_backlog(client, destination: Destination, count: int) -> list[Delivery]:
    """`count` ingests of {"n": i} to the disabled destination, each kept paused."""
    for n in range(count):
        entry = ingest(client, destination.account, json.dumps({"n": n})).json()["deliveries"][0]
        assert entry["status"] == "paused"
    return list(Delivery.objects.order_by("id"))


def _received(receiver) -> list[tuple[str, str, bytes, str]]:
    """What the receiver got: method, path, body and webhook-id of each request."""
    return [(r.method, r.path, r.body, r.headers["webhook-id"]) for r in receiver.requests]


# --- the receiver in control ------------------------------------------------------------------------


def test_410_gone_disables_the_destination_and_alerts(client, destination, receiver, broker, json_log):
    """410: the delivery fails for good, the destination is disabled saying so, one alert is raised."""
    receiver.respond = answer(410, b"gone")
    entry = ingest(client, destination.account).json()["deliveries"][0]
    assert (entry["status"], entry["status_code"], entry["error"]) == (
        "failed",
        410,
        "destination answered HTTP 410",
    )
    destination.refresh_from_db()
    assert (destination.enabled, destination.disabled_reason) == (False, GONE)
    delivery = Delivery.objects.get()
    alerted = [line for line in json_log.lines(ALERTS) if line.get("alert") == "destination_disabled"]
    assert [{k: v for k, v in line.items() if k != "timestamp"} for line in alerted] == [
        {
            "level": "WARNING",
            "logger": ALERTS,
            "message": "destination disabled",
            "request_id": delivery.event.request_id,
            "alert": "destination_disabled",
            "account_id": str(destination.account_id),
            "event_id": str(delivery.event_id),
            "delivery_id": str(delivery.delivery_id),
            "destination_id": destination.id,
            "status_code": 410,
            "reason": GONE,
        }
    ]
    assert _received(receiver) == [("POST", "/in", b'{"a": 1}', str(delivery.delivery_id))]


def test_the_disable_header_on_a_success_disables_the_destination(client, destination, receiver):
    """A 200 with `webhook-delivery: disable` succeeds, and the destination is disabled after it."""
    receiver.respond = answer(200, b"ok", headers={"Webhook-Delivery": "Disable"})
    entry = ingest(client, destination.account).json()["deliveries"][0]
    assert (entry["status"], entry["status_code"]) == ("succeeded", 200)
    assert _received(receiver) == [("POST", "/in", b'{"a": 1}', entry["delivery_id"])]
    destination.refresh_from_db()
    assert (destination.enabled, destination.disabled_reason) == (False, ASKED)


def test_the_disable_header_on_a_retryable_failure_pauses_the_delivery(client, destination, receiver, broker):
    """A 500 with the disable header: the delivery would be retried, so it is kept paused instead."""
    receiver.respond = answer(500, headers={"webhook-delivery": "disable"})
    entry = ingest(client, destination.account).json()["deliveries"][0]
    assert (entry["status"], entry["error"]) == (
        "paused",
        f"destination answered HTTP 500; the destination is disabled ({ASKED})",
    )
    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.next_attempt_at, delivery.attempt_count) == ("paused", None, 1)
    assert broker == []


def test_another_header_value_disables_nothing(client, destination, receiver):
    """`webhook-delivery` with any other value than `disable` is ignored."""
    receiver.respond = answer(200, headers={"webhook-delivery": "keep"})
    ingest(client, destination.account)
    destination.refresh_from_db()
    assert (destination.enabled, destination.disabled_reason) == (True, "")


def test_429_with_retry_after_seconds_delays_without_spending_an_attempt(
    client, destination, receiver, broker
):
    """429 Retry-After: 30 — pending, due 30 s after the answer, attempt_count still 0, attempt logged."""
    receiver.respond = answer(429, b"slow down", headers={"Retry-After": "30"})
    entry = ingest(client, destination.account).json()["deliveries"][0]
    assert (entry["status"], entry["status_code"]) == ("pending", 429)
    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.attempt_count) == ("pending", 0)
    assert delivery.next_attempt_at - delivery.processed_at == timedelta(seconds=30)
    assert list(Attempt.objects.values_list("status_code", "response_body")) == [(429, "slow down")]
    assert _received(receiver) == [("POST", "/in", b'{"a": 1}', str(delivery.delivery_id))]


def test_503_with_an_http_date_retry_after_is_capped(client, destination, receiver, broker, settings):
    """503 with a Retry-After date two hours ahead waits DATAPUSHER_RETRY_AFTER_MAX (here 600 s)."""
    settings.DATAPUSHER_RETRY_AFTER_MAX = 600
    later = email.utils.formatdate(time.time() + 7200, usegmt=True)
    receiver.respond = answer(503, headers={"Retry-After": later})
    ingest(client, destination.account)
    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.attempt_count) == ("pending", 0)
    assert delivery.next_attempt_at - delivery.processed_at == timedelta(seconds=600)


def test_503_with_an_http_date_retry_after_waits_until_then(client, destination, receiver, broker):
    """503 with a Retry-After date 120 s ahead is due again at about that date."""
    later = time.time() + 120
    receiver.respond = answer(503, headers={"Retry-After": email.utils.formatdate(later, usegmt=True)})
    ingest(client, destination.account)
    delivery = Delivery.objects.get()
    assert abs(delivery.next_attempt_at.timestamp() - later) <= 2


def test_throttling_past_the_schedule_still_retries(destination, receiver, broker):
    """A delivery with no attempt left in the schedule is still pending after a throttled 429."""
    receiver.respond = answer(429, headers={"Retry-After": "10"})
    delivery = pending_delivery(attempt_count=2)
    Delivery.objects.filter(pk=delivery.pk).update(destination=destination, url=destination.url)
    delivery_attempt_due(delivery_pk=delivery.pk)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempt_count, delivery.attempts.count()) == ("pending", 2, 1)


def test_without_a_broker_a_throttled_answer_fails_and_counts(client, destination, receiver, settings):
    """No broker, so no retry: a 429 with Retry-After is failed, its one attempt counted."""
    settings.CELERY_BROKER_URL = ""
    receiver.respond = answer(429, headers={"Retry-After": "30"})
    entry = ingest(client, destination.account).json()["deliveries"][0]
    delivery = Delivery.objects.get()
    assert (entry["status"], delivery.status, delivery.attempt_count, delivery.next_attempt_at) == (
        "failed",
        "failed",
        1,
        None,
    )


def test_503_without_retry_after_spends_an_attempt(client, destination, receiver, broker):
    """A 503 without Retry-After follows the schedule and counts, as before."""
    receiver.respond = answer(503)
    ingest(client, destination.account)
    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.attempt_count) == ("pending", 1)
    assert delivery.next_attempt_at - delivery.processed_at == timedelta(seconds=5)


# --- paused -----------------------------------------------------------------------------------------


def test_an_ingest_to_a_disabled_destination_is_paused_and_sends_nothing(client, destination, receiver):
    """Sync mode: 200, the entry paused with the reason, the receiver gets nothing, the row kept."""
    _disabled(destination, GONE)
    response = ingest(client, destination.account)
    delivery = Delivery.objects.get()
    assert response.status_code == 200
    assert response.json()["deliveries"] == [
        {
            "delivery_id": str(delivery.delivery_id),
            "destination_id": destination.id,
            "url": destination.url,
            "http_method": "POST",
            "status": "paused",
            "status_code": None,
            "error": f"the destination is disabled ({GONE})",
            "duration_ms": None,
        }
    ]
    assert (delivery.status, delivery.attempt_count, delivery.next_attempt_at) == ("paused", 0, None)
    assert receiver.requests == []


def test_only_the_disabled_destination_is_paused(client, receiver):
    """Of two destinations, the enabled one is sent to, the disabled one paused."""
    account = AccountFactory()
    on = DestinationFactory(account=account, url=f"{receiver.url}/on", headers={})
    _disabled(DestinationFactory(account=account, url=f"{receiver.url}/off", headers={}))
    entries = ingest(client, account).json()["deliveries"]
    assert [(e["destination_id"] == on.id, e["status"]) for e in entries] == [
        (True, "succeeded"),
        (False, "paused"),
    ]
    assert [r.path for r in receiver.requests] == ["/on"]


def test_queue_mode_publishes_no_paused_delivery(client, destination, settings, broker, receiver):
    """Queue mode: 202 with the entry paused, nothing published for it."""
    settings.DATAPUSHER_DELIVERY_MODE = "queue"
    _disabled(destination)
    response = ingest(client, destination.account)
    assert response.status_code == 202
    assert [(e["status"], e["error"]) for e in response.json()["deliveries"]] == [
        ("paused", "the destination is disabled")
    ]
    assert broker == []


def test_the_dispatcher_never_publishes_a_paused_delivery(broker):
    """A paused delivery due long ago is not published."""
    pending_delivery(status=Delivery.Status.PAUSED, next_attempt_at=timezone.now() - timedelta(days=1))
    assert deliveries_dispatch(limit=10) == 0
    assert broker == []


def test_a_worker_pauses_a_due_delivery_of_a_disabled_destination(destination, receiver, broker):
    """A pending delivery whose destination was disabled since is paused by the worker, not sent."""
    delivery = pending_delivery()
    Delivery.objects.filter(pk=delivery.pk).update(destination=destination, url=destination.url)
    _disabled(destination, ASKED)
    delivery_attempt_due(delivery_pk=delivery.pk)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.error, delivery.attempt_count, delivery.lease_id) == (
        "paused",
        f"the destination is disabled ({ASKED})",
        0,
        None,
    )
    assert receiver.requests == []
    assert Attempt.objects.count() == 0


def test_retrying_a_paused_delivery_is_409(client, destination, api_client, receiver):
    """POST retry on a delivery of a disabled destination: 409 saying to resume it; nothing sent."""
    _disabled(destination)
    [delivery] = _paused_backlog(client, destination, 1)
    response = api_client.post(f"/api/deliveries/{delivery.delivery_id}/retry/")
    assert (response.status_code, response.json()) == (
        409,
        {
            "detail": f"Not sent: the destination is disabled. Resume the destination "
            f"(POST /api/destinations/{destination.id}/resume/) to send its paused deliveries."
        },
    )
    assert receiver.requests == []


def test_redelivering_an_event_keeps_a_disabled_destinations_delivery_paused(
    client, destination, api_client, receiver
):
    """An event's failed delivery redelivered after its destination was disabled: paused, not sent."""
    receiver.respond = answer(500)
    event_id = ingest(client, destination.account).json()["event_id"]
    _disabled(destination)
    response = api_client.post(f"/api/events/{event_id}/redeliver/")
    assert response.status_code == 200
    assert [(d["status"], d["error"]) for d in response.json()] == [("paused", "the destination is disabled")]
    assert len(receiver.requests) == 1


# --- resume -----------------------------------------------------------------------------------------


def test_resume_sends_the_backlog_oldest_first(client, destination, api_client, receiver, settings):
    """Sync mode, one at a time: all three sent in the order received, the destination enabled."""
    settings.DATAPUSHER_ADMIN_SEND_CONCURRENCY = 1
    _disabled(destination, GONE)
    backlog = _paused_backlog(client, destination, 3)
    response = api_client.post(f"/api/destinations/{destination.id}/resume/")
    assert (response.status_code, response.json()) == (
        200,
        {"resumed": 3, "sent": 3, "succeeded": 3, "pending": 0, "queued": False},
    )
    assert _received(receiver) == [
        ("POST", "/in", json.dumps({"n": n}).encode(), str(d.delivery_id)) for n, d in enumerate(backlog)
    ]
    assert set(Delivery.objects.values_list("status", flat=True)) == {"succeeded"}
    destination.refresh_from_db()
    assert (destination.enabled, destination.disabled_reason) == (True, "")


def test_resume_in_sync_mode_is_bounded_and_leaves_the_rest_pending(
    client, destination, api_client, receiver, settings
):
    """No time left after the first group: one sent, two left pending; the next resume sends them."""
    settings.DATAPUSHER_ADMIN_SEND_CONCURRENCY = 1
    settings.DATAPUSHER_ADMIN_ACTION_SECONDS = 0.001
    _disabled(destination)
    backlog = _paused_backlog(client, destination, 3)
    first = api_client.post(f"/api/destinations/{destination.id}/resume/").json()
    assert first == {"resumed": 3, "sent": 1, "succeeded": 1, "pending": 2, "queued": False}
    assert list(Delivery.objects.order_by("id").values_list("status", flat=True)) == [
        "succeeded",
        "pending",
        "pending",
    ]
    second = api_client.post(f"/api/destinations/{destination.id}/resume/").json()
    assert second == {"resumed": 0, "sent": 1, "succeeded": 1, "pending": 1, "queued": False}
    assert [r.headers["webhook-id"] for r in receiver.requests] == [str(d.delivery_id) for d in backlog[:2]]


def test_resume_in_queue_mode_hands_the_backlog_over_oldest_first(
    client, destination, api_client, broker, settings
):
    """Queue mode: all pending, due as created (in order), published oldest first; nothing sent here."""
    settings.DATAPUSHER_DELIVERY_MODE = "queue"
    _disabled(destination)
    backlog = _paused_backlog(client, destination, 3)
    response = api_client.post(f"/api/destinations/{destination.id}/resume/")
    assert (response.status_code, response.json()) == (
        200,
        {"resumed": 3, "sent": 0, "succeeded": 0, "pending": 3, "queued": True},
    )
    assert broker == [d.pk for d in backlog]
    rows = list(
        Delivery.objects.order_by("id").values_list("status", "next_attempt_at", "created_at", "error")
    )
    assert rows == [("pending", d.created_at, d.created_at, "") for d in backlog]


def test_patch_enabled_false_then_true(client, destination, api_client, receiver):
    """An admin turns a destination on and off; turning it on clears the system's reason and sends
    nothing of the paused backlog."""
    _disabled(destination, GONE)
    url = f"/api/destinations/{destination.id}/"
    _paused_backlog(client, destination, 1)
    assert api_client.patch(url, {"enabled": True}, format="json").json()["disabled_reason"] == ""
    assert list(Delivery.objects.values_list("status", flat=True)) == ["paused"]  # resume sends it
    assert receiver.requests == []
    body = api_client.patch(url, {"enabled": False, "disabled_reason": "ignored"}, format="json").json()
    assert (body["enabled"], body["disabled_reason"]) == (False, "")


def test_the_enabled_filter(destination, api_client):
    """?enabled=false lists only the disabled destinations, ?enabled=true only the others."""
    off = _disabled(DestinationFactory(account=destination.account))
    for value, expected in (("false", [off.id]), ("true", [destination.id])):
        body = api_client.get("/api/destinations/", {"enabled": value}).json()
        assert [d["id"] for d in body["results"]] == expected


def test_delete_says_how_many_unsent_deliveries_go_with_it(client, destination, api_client, receiver):
    """Two paused and one pending delivery: 200 {"deleted_pending": 3}, each failed, a sent one kept."""
    assert ingest(client, destination.account).json()["deliveries"][0]["status"] == "succeeded"
    _disabled(destination)
    _paused_backlog(client, destination, 2)
    pending = pending_delivery()
    Delivery.objects.filter(pk=pending.pk).update(destination=destination)
    response = api_client.delete(f"/api/destinations/{destination.id}/")
    assert (response.status_code, response.json()) == (200, {"deleted_pending": 3})
    assert sorted(Delivery.objects.values_list("status", "error")) == [
        ("failed", "destination deleted"),
        ("failed", "destination deleted"),
        ("failed", "destination deleted"),
        ("succeeded", ""),
    ]


# --- a resume racing the writers that pause ---------------------------------------------------------


def test_an_ingest_that_read_the_destination_disabled_before_a_resume_loses_nothing(
    client, destination, broker, settings, monkeypatch
):
    """The resume runs between the ingest's read (disabled) and its insert: the delivery stored paused
    after the resume read its backlog is made pending and handed over by the ingest itself."""
    settings.DATAPUSHER_DELIVERY_MODE = "queue"
    _disabled(destination)
    real_store = ingest_module._event_store

    def store_after_a_resume(**kwargs):
        assert destination_resume(destination=Destination.objects.get(pk=destination.pk)).resumed == 0
        return real_store(**kwargs)

    monkeypatch.setattr(ingest_module, "_event_store", store_after_a_resume)
    entry = ingest(client, destination.account).json()["deliveries"][0]
    delivery = Delivery.objects.get()
    assert (entry["status"], delivery.status, delivery.error) == ("pending", "pending", "")
    assert broker == [delivery.pk]


def test_a_worker_that_read_the_destination_disabled_before_a_resume_loses_nothing(
    destination, receiver, broker, monkeypatch
):
    """The resume runs after a worker claimed a delivery with its destination disabled: the worker
    pauses it, finds the destination enabled, and makes it pending and handed over again."""
    delivery = pending_delivery()
    Delivery.objects.filter(pk=delivery.pk).update(destination=destination, url=destination.url)
    _disabled(destination)
    real_attempt = delivery_module._deliveries_attempt

    def attempt_after_a_resume(**kwargs):
        destination_resume(destination=Destination.objects.get(pk=destination.pk))
        return real_attempt(**kwargs)

    monkeypatch.setattr(delivery_module, "_deliveries_attempt", attempt_after_a_resume)
    delivery_attempt_due(delivery_pk=delivery.pk)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.lease_id, delivery.attempt_count) == ("pending", None, 0)
    assert broker == [delivery.pk]
    assert receiver.requests == []


def test_resumes_racing_ingests_on_postgresql_lose_no_delivery(postgres, settings, published):
    """Threads: ingests to a disabled destination while it is resumed, round after round (queue
    mode); afterwards no delivery is left paused and every one was handed to the broker."""
    settings.DATAPUSHER_DELIVERY_MODE = "queue"
    settings.CELERY_BROKER_URL = "redis://broker.invalid:6379/0"
    destination = DestinationFactory(url="https://hooks.example.com/race", headers={})
    account = destination.account

    def run(barrier, call):
        try:
            barrier.wait()
            call()
        finally:
            connection.close()

    for _ in range(5):
        _disabled(destination)
        barrier = threading.Barrier(7)
        calls = [lambda: ingest(Client(), account) for _ in range(6)]
        calls.append(lambda: destination_resume(destination=Destination.objects.get(pk=destination.pk)))
        threads = [threading.Thread(target=run, args=(barrier, call)) for call in calls]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert Delivery.objects.filter(status=Delivery.Status.PAUSED).count() == 0
    assert Delivery.objects.count() == 30
    assert set(published) == set(Delivery.objects.values_list("pk", flat=True))


def test_a_destination_is_disabled_once(destination):
    """Of two senders disabling one destination, only the first turns it off (and alerts)."""
    assert destination_disable(destination_id=destination.pk, reason=GONE) is True
    assert destination_disable(destination_id=destination.pk, reason=ASKED) is False
    destination.refresh_from_db()
    assert (destination.enabled, destination.disabled_reason) == (False, GONE)


def test_resume_in_queue_mode_hands_over_one_batch_and_nothing_not_due(
    client, destination, api_client, broker, settings
):
    """DATAPUSHER_DISPATCH_BATCH 2: the two oldest of three are published now, the third left to the
    dispatcher; a retry due tomorrow is counted pending but not published."""
    settings.DATAPUSHER_DELIVERY_MODE = "queue"
    settings.DATAPUSHER_DISPATCH_BATCH = 2
    later = pending_delivery(next_attempt_at=timezone.now() + timedelta(days=1))
    Delivery.objects.filter(pk=later.pk).update(destination=destination)
    _disabled(destination)
    backlog = [d for d in _paused_backlog(client, destination, 3) if d.pk != later.pk]
    body = api_client.post(f"/api/destinations/{destination.id}/resume/").json()
    assert body == {"resumed": 3, "sent": 0, "succeeded": 0, "pending": 4, "queued": True}
    assert broker == [d.pk for d in backlog[:2]]
    assert deliveries_dispatch(limit=10) == 1
    assert broker[2:] == [backlog[2].pk]


def test_a_destination_can_be_created_disabled(api_client):
    """POST with enabled false: 201, stored disabled, no reason."""
    account = AccountFactory()
    data = {"account": str(account.account_id), "url": "https://h.example.com/", "http_method": "POST"}
    response = api_client.post("/api/destinations/", {**data, "enabled": False}, format="json")
    assert response.status_code == 201
    assert (response.json()["enabled"], response.json()["disabled_reason"]) == (False, "")
    assert Destination.objects.get().enabled is False
