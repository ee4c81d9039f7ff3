"""DATAPUSHER_MAX_QUERY_BYTES: a GET/DELETE delivery whose query string would be too long fails at
once, unsent, instead of being answered 414 on every retry."""

import json

import pytest

from destinations.tests.factories import DestinationFactory
from server.models import Attempt, Delivery
from server.tests.helpers import ingest


@pytest.mark.django_db
def test_an_ingest_to_a_get_destination_over_the_limit_fails_it_unsent(client, receiver, settings, published):
    """With retries on, the delivery fails for good after one attempt naming the limit, unsent."""
    settings.DATAPUSHER_MAX_QUERY_BYTES = 100
    settings.CELERY_BROKER_URL = "redis://broker.invalid:6379/0"  # a retryable failure would stay pending
    destination = DestinationFactory(url=f"{receiver.url}/in", http_method="GET")
    response = ingest(client, destination.account, json.dumps({"note": "x" * 200}))
    assert response.status_code == 200
    [entry] = response.json()["deliveries"]
    assert (entry["status"], entry["status_code"], entry["error"]) == (
        "failed",
        None,
        "query string of 205 bytes exceeds DATAPUSHER_MAX_QUERY_BYTES (100); not sent",
    )
    assert Delivery.objects.get().next_attempt_at is None
    assert Attempt.objects.count() == 1
    assert published == []
    assert receiver.requests == []


@pytest.mark.django_db
def test_the_same_events_body_destinations_are_sent_as_usual(client, receiver, settings):
    """Only the GET destination is refused: a POST destination of the account gets the body."""
    settings.DATAPUSHER_MAX_QUERY_BYTES = 100
    get = DestinationFactory(url=f"{receiver.url}/get", http_method="GET")
    DestinationFactory(account=get.account, url=f"{receiver.url}/post", http_method="POST")
    body = json.dumps({"note": "x" * 200}).encode()
    response = ingest(client, get.account, body)
    assert [(d["http_method"], d["status"]) for d in response.json()["deliveries"]] == [
        ("GET", "failed"),
        ("POST", "succeeded"),
    ]
    assert [(r.method, r.path, r.body) for r in receiver.requests] == [("POST", "/post", body)]
