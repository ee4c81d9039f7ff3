"""CL-X-EVENT-ID: the same event id for an account is delivered once, even under concurrency."""

import time

import pytest
from django.test import Client

from accounts.tests.factories import AccountFactory
from destinations.tests.factories import DestinationFactory
from server.models import Attempt, Delivery, Event
from server.tests.helpers import at_once, ingest


@pytest.mark.django_db
def test_repeated_event_id_sends_nothing_and_answers_the_first_outcome(client, mocked):
    """The same id and body again: 200, duplicate true, the first event's deliveries, no request."""
    account = AccountFactory()
    DestinationFactory(account=account, url="https://hooks.example.com/a")
    mocked.post("https://hooks.example.com/a", status=502)
    first = ingest(client, account, event_id="order-7")
    second = ingest(client, account, event_id="order-7")
    assert len(mocked.calls) == 1
    assert (first.status_code, second.status_code) == (200, 200)
    assert first.json()["duplicate"] is False
    assert second.json() == {**first.json(), "duplicate": True}
    assert second.json()["deliveries"][0]["status_code"] == 502
    event = Event.objects.get()
    assert (event.external_id, event.body) == ("order-7", '{"a": 1}')


CONFLICT = {
    "success": False,
    "message": "Conflict",
    "error": "CL-X-EVENT-ID order-7 was already used with a different body.",
}


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body",
    [b'{"different": true}', b'{"a":1}', b'{"a": 1} ', '{"a": "\u00e9"}'.encode(), b'{"a": 10}'],
    ids=["other-object", "other-spacing", "trailing-space", "other-text", "longer"],
)
def test_reused_event_id_with_another_body_is_409(client, mocked, body):
    """A body differing by a byte from the first with that id: 409 Conflict; nothing stored or sent."""
    account = AccountFactory()
    DestinationFactory(account=account, url="https://hooks.example.com/a")
    mocked.post("https://hooks.example.com/a")
    first = ingest(client, account, event_id="order-7")
    second = ingest(client, account, body, event_id="order-7")
    assert first.status_code == 200
    assert (second.status_code, second.json()) == (409, CONFLICT)
    assert len(mocked.calls) == 1
    assert (Event.objects.count(), Delivery.objects.count()) == (1, 1)
    assert Event.objects.get().body == '{"a": 1}'


@pytest.mark.django_db
def test_event_id_of_another_account_with_another_body_is_not_a_conflict(client, mocked):
    """Only the account's own events are compared: another body under another account's id is a new event."""
    first, second = AccountFactory(), AccountFactory()
    ingest(client, first, b'{"x": 1}', event_id="order-7")
    response = ingest(client, second, b'{"y": 2}', event_id="order-7")
    assert (response.status_code, response.json()["duplicate"]) == (200, False)


@pytest.mark.django_db
def test_event_ids_are_scoped_per_account(client, mocked):
    """Two accounts may use the same event id; each is delivered."""
    first, second = AccountFactory(), AccountFactory()
    DestinationFactory(account=first, url="https://first.example.com/")
    DestinationFactory(account=second, url="https://second.example.com/")
    mocked.post("https://first.example.com/")
    mocked.post("https://second.example.com/")
    answers = [ingest(client, account, event_id="evt-1").json() for account in (first, second)]
    assert [a["duplicate"] for a in answers] == [False, False]
    assert Event.objects.filter(external_id="evt-1").count() == 2


@pytest.mark.django_db
def test_without_event_id_every_ingest_is_a_new_event(client, mocked):
    """No CL-X-EVENT-ID (or an empty one): no deduplication."""
    account = AccountFactory()
    DestinationFactory(account=account, url="https://hooks.example.com/")
    mocked.post("https://hooks.example.com/")
    ingest(client, account)
    ingest(client, account, event_id="")
    assert len(mocked.calls) == 2
    assert list(Event.objects.values_list("external_id", flat=True)) == [None, None]


@pytest.mark.django_db
@pytest.mark.parametrize("event_id", ["x" * 256, "tab\there", "caf\u00e9", " leading-space"])
def test_malformed_event_id_is_400(client, event_id):
    """An event id must be 1 to 255 printable ASCII characters; nothing is stored."""
    account = AccountFactory()
    response = client.post(
        "/server/incoming_data",
        b"{}",
        content_type="application/json",
        headers={"CL-X-TOKEN": account.app_secret_token, "CL-X-EVENT-ID": event_id},
    )
    assert response.status_code == 400
    assert response.json() == {
        "success": False,
        "message": "Invalid Data",
        "error": "CL-X-EVENT-ID must be 1 to 255 printable ASCII characters.",
    }
    assert Event.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_two_identical_requests_at_the_same_instant_deliver_once(concurrent_writers, receiver):
    """Concurrent ingests with one event id: one delivery reaches the receiver, one answer is a duplicate."""
    receiver.respond = lambda handler: (time.sleep(0.3), handler.send_response(200), handler.end_headers())
    account = AccountFactory()
    DestinationFactory(account=account, url=receiver.url)
    answers = at_once(lambda: ingest(Client(), account, event_id="same-instant").json())
    assert len(receiver.requests) == 1
    assert sorted(a["duplicate"] for a in answers) == [False, True]
    assert answers[0]["event_id"] == answers[1]["event_id"]
    assert (Event.objects.count(), Delivery.objects.count(), Attempt.objects.count()) == (1, 1, 1)


@pytest.mark.django_db(transaction=True)
def test_one_event_id_with_two_bodies_at_the_same_instant(concurrent_writers, receiver):
    """Concurrent ingests, one event id, two bodies: one 200 delivered, one 409 storing nothing."""
    receiver.respond = lambda handler: (time.sleep(0.3), handler.send_response(200), handler.end_headers())
    account = AccountFactory()
    DestinationFactory(account=account, url=receiver.url)
    bodies = iter([b'{"n": 1}', b'{"n": 2}'])
    answers = at_once(lambda: ingest(Client(), account, next(bodies), event_id="same-instant"))
    assert sorted(a.status_code for a in answers) == [200, 409]
    stored = next(a for a in answers if a.status_code == 200)
    assert len(receiver.requests) == 1
    assert receiver.requests[0].body == Event.objects.get().body.encode()
    assert stored.json()["event_id"] == str(Event.objects.get().event_id)
    assert (Event.objects.count(), Delivery.objects.count(), Attempt.objects.count()) == (1, 1, 1)
