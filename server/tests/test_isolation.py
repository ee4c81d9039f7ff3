"""One account cannot starve another: the per-account bulkhead on outbound requests, over real sockets.

Counted at the receiver, never inferred from elapsed time. The same under gunicorn, with web
threads in play, is in test_saturation.py.
"""

import threading
from collections.abc import Iterator

import pytest
from django.utils import timezone

from accounts.tests.factories import AccountFactory
from destinations.tests.factories import DestinationFactory
from server.models import Attempt, Delivery, Event
from server.services import delivery
from server.tests.helpers import ingest

NOT_STARTED = "not started: the account or this process has too many deliveries in flight; still pending"


@pytest.fixture
def limits(settings):
    settings.DATAPUSHER_ACCOUNT_CONCURRENCY = 4
    settings.DATAPUSHER_DELIVERY_CONCURRENCY = 32
    return settings


@pytest.fixture
def held(receiver) -> Iterator[threading.Event]:
    """The receiver holds requests to /slow until the event is set (set at teardown too)."""
    release = threading.Event()

    def respond(handler):
        if handler.path.startswith("/slow"):
            release.wait(10)
        handler.send_response(200)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    receiver.respond = respond
    yield release
    release.set()


def occupy(account_id, url: str, count: int) -> threading.Thread:
    """`count` requests of `account_id` in flight to `url`, sent by the delivery pool as an ingest would."""
    request = {"method": "POST", "url": url, "headers": {}, "body": b"{}"}
    thread = threading.Thread(target=delivery._fan_out, args=([(account_id, request)] * count,), daemon=True)
    thread.start()
    return thread


def wait_in_flight(receiver, count: int) -> None:
    for _ in range(200):
        if receiver.in_flight >= count:
            return
        threading.Event().wait(0.02)
    raise AssertionError(f"only {receiver.in_flight} requests reached the receiver")


# --- the bulkhead itself ----------------------------------------------------------------------------


def test_one_account_may_take_all_but_a_share_of_the_pool(limits):
    """Alone, an account may use all but 4 of the 32 slots; a newcomer still gets those 4."""
    bulkhead = delivery._Bulkhead()
    with bulkhead.hold("a"), bulkhead.hold("b"), bulkhead.hold("c"):
        assert bulkhead.take("a", 3) == 3
        assert bulkhead.take("a", 30) == 25
        assert bulkhead.take("b", 10) == 4
        assert bulkhead.take("c", 1) == 0
        bulkhead.release("b")
        assert bulkhead.take("c", 1) == 1
        assert (bulkhead._by_account, bulkhead._requests) == ({"a": [1, 28], "b": [1, 3], "c": [1, 1]}, 32)


def test_an_account_may_have_at_most_its_share_of_threads_waiting(limits):
    """Five threads sending for one account at once: four hold it, the fifth is refused however free
    the pool; once one lets go, another may hold it."""
    bulkhead = delivery._Bulkhead()
    release, results = threading.Event(), []

    def send():
        with bulkhead.hold("a") as admitted:
            results.append(admitted)
            if admitted:
                release.wait(5)

    threads = [threading.Thread(target=send) for _ in range(5)]
    for thread in threads:
        thread.start()
    for _ in range(200):
        if len(results) == 5:
            break
        threading.Event().wait(0.01)
    assert sorted(results) == [False, True, True, True, True]
    release.set()
    for thread in threads:
        thread.join(5)
    with bulkhead.hold("a") as admitted:
        assert admitted


def test_a_thread_holds_an_account_once_however_deep(limits):
    """The ingest holds its account and its fan-out holds it again: one place, not two."""
    bulkhead = delivery._Bulkhead()
    with bulkhead.hold("a"), bulkhead.hold("a") as again:
        assert (again, bulkhead._by_account["a"][0]) == (True, 1)
    assert bulkhead._by_account == {}


def test_counts_go_back_to_zero(limits):
    """Every slot and place is given back: nothing leaks."""
    bulkhead = delivery._Bulkhead()
    with bulkhead.hold("a"):
        assert bulkhead.take("a", 20) == 20
        for _ in range(20):
            bulkhead.release("a")
    assert (bulkhead._requests, bulkhead._by_account) == (0, {})


# --- over real sockets ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_another_account_is_delivered_while_one_account_tries_to_take_the_pool(
    client, receiver, held, limits
):
    """Account A asks for the whole pool (32 requests to a destination that does not answer) and gets
    all but its share, 28; B's ingest to a fast destination is sent at once and succeeds, and A's
    next request is not let through."""
    limits.DATAPUSHER_CONNECT_TIMEOUT, limits.DATAPUSHER_READ_TIMEOUT = 0.5, 3
    flooding, other = AccountFactory(), AccountFactory()
    occupy(flooding.account_id, f"{receiver.url}/slow", 32)
    wait_in_flight(receiver, 28)
    DestinationFactory(account=other, url=f"{receiver.url}/fast")
    answer = ingest(client, other).json()
    assert [(d["status"], d["status_code"], d["error"]) for d in answer["deliveries"]] == [
        ("succeeded", 200, None)
    ]
    occupy(flooding.account_id, f"{receiver.url}/slow", 1).join(5)
    assert [r.path for r in receiver.requests].count("/slow") == 28
    assert receiver.max_in_flight == 28 + 1


@pytest.mark.django_db
def test_an_account_at_its_share_of_waiting_ingests_is_told_to_come_back(client, receiver, held, limits):
    """Four of the account's ingests already wait on a slow destination (its share): the next one
    answers 429 with Retry-After at once and stores nothing — the sender keeps its event and sends
    it again later. Another account's ingest is served as usual."""
    busy, other = AccountFactory(), AccountFactory()
    for _ in range(4):
        occupy(busy.account_id, f"{receiver.url}/slow", 1)
    wait_in_flight(receiver, 4)
    DestinationFactory(account=busy, url=f"{receiver.url}/later")
    DestinationFactory(account=other, url=f"{receiver.url}/fast")
    response = ingest(client, busy)
    assert (response.status_code, response.json(), response.headers["Retry-After"]) == (
        429,
        {"success": False, "message": "Too Many Requests"},
        "1",
    )
    assert (Event.objects.count(), Delivery.objects.count()) == (0, 0)
    assert [d["status"] for d in ingest(client, other).json()["deliveries"]] == ["succeeded"]
    assert [r.path for r in receiver.requests].count("/later") == 0


@pytest.mark.django_db
def test_deliveries_that_find_no_slot_stay_pending_with_no_attempt(
    client, api_client, receiver, held, limits
):
    """Two other accounts hold every slot of the pool (28 and 4 of 32): an ingest of a third is
    stored and answered at once, its deliveries pending (not failed, no attempt spent, lease
    released, due again shortly). Once slots are free, an event redelivery sends them."""
    account = AccountFactory()
    occupy("first", f"{receiver.url}/slow", 28)
    wait_in_flight(receiver, 28)
    occupy("second", f"{receiver.url}/slow", 4)
    wait_in_flight(receiver, 32)
    destinations = DestinationFactory.create_batch(2, account=account, url=f"{receiver.url}/later")
    answer = ingest(client, account).json()
    assert [
        (d["destination_id"], d["status"], d["status_code"], d["error"]) for d in answer["deliveries"]
    ] == [(d.id, "pending", None, NOT_STARTED) for d in destinations]
    stored = list(Delivery.objects.order_by("id"))
    assert [(d.status, d.attempt_count, d.lease_id) for d in stored] == [("pending", 0, None)] * 2
    assert all(d.next_attempt_at > d.created_at for d in stored)
    assert Attempt.objects.count() == 0
    held.set()
    for _ in range(200):
        if not delivery.bulkhead._requests:
            break
        threading.Event().wait(0.02)
    sent = api_client.post(f"/api/events/{answer['event_id']}/redeliver/").json()
    assert [(d["status"], d["attempt_count"]) for d in sent] == [("succeeded", 1)] * 2
    assert [r.path for r in receiver.requests].count("/later") == 2


@pytest.mark.django_db
def test_a_workers_task_for_an_account_at_its_limit_is_put_back_without_an_attempt(receiver, held, limits):
    """In a worker process too: with the account's four sends waiting, its next task neither sends
    nor spends an attempt; the delivery is released, due 1 to 5 s later, for the dispatcher."""
    account = AccountFactory()
    for _ in range(4):
        occupy(account.account_id, f"{receiver.url}/slow", 1)
    wait_in_flight(receiver, 4)
    destination = DestinationFactory(account=account, url=f"{receiver.url}/later")
    event = Event.objects.create(account=account, body="{}")
    waiting = Delivery.objects.create(
        event=event,
        destination=destination,
        url=destination.url,
        http_method="POST",
        next_attempt_at=timezone.now(),
    )
    delivery.delivery_attempt_due(delivery_pk=waiting.pk)
    waiting.refresh_from_db()
    assert (waiting.status, waiting.attempt_count, waiting.lease_id, waiting.dispatched_at) == (
        "pending",
        0,
        None,
        None,
    )
    assert waiting.next_attempt_at > timezone.now()
    assert [r.path for r in receiver.requests].count("/later") == 0
