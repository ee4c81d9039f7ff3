"""The alert hook: WARNING lines when a delivery fails for good and when a destination reaches
DATAPUSHER_ALERT_AFTER_FAILURES failed attempts in a row, and the JSON notification POSTed to
DATAPUSHER_ALERT_URL in the background — through server.http, bounded, never failing a delivery."""

import json
from datetime import datetime

import pytest

from datapusher import __version__
from destinations.models import Destination
from destinations.tests.factories import DestinationFactory
from server.models import Delivery
from server.services import alerts
from server.tests.conftest import wait_until
from server.tests.helpers import ingest

pytestmark = pytest.mark.django_db
ALERTS = "server.services.alerts"


def _answer(handler, status: int) -> None:
    handler.send_response(status)
    handler.send_header("Content-Length", "0")
    handler.end_headers()


def _fail_but_take_alerts(handler) -> None:
    """The destination (/in) answers 500; the operator's endpoint (/alerts) 204."""
    _answer(handler, 204 if handler.path == "/alerts" else 500)


@pytest.fixture
def notifier(monkeypatch) -> alerts._Notifier:
    """A notifier thread of the test's own."""
    fresh = alerts._Notifier()
    monkeypatch.setattr(alerts, "notifier", fresh)
    return fresh


def _warnings(json_log) -> list[tuple[str, str]]:
    return [(line["message"], line.get("alert")) for line in json_log.lines(ALERTS)]


def test_a_destination_alerts_once_on_reaching_the_threshold(client, receiver, settings, json_log):
    """Threshold 3: five failed ingests in a row alert once, on the third; the count is 5."""
    settings.DATAPUSHER_ALERT_AFTER_FAILURES = 3
    receiver.respond = lambda handler: _answer(handler, 500)
    destination = DestinationFactory(url=f"{receiver.url}/in")
    account = destination.account  # holds its token
    for expected_count in range(1, 6):
        assert ingest(client, account).status_code == 200
        destination.refresh_from_db()
        assert destination.consecutive_failures == expected_count
    failing = [line for line in json_log.lines(ALERTS) if line["message"] == "destination keeps failing"]
    third = Delivery.objects.order_by("id")[2]
    assert [{k: v for k, v in line.items() if k != "timestamp"} for line in failing] == [
        {
            "level": "WARNING",
            "logger": ALERTS,
            "message": "destination keeps failing",
            "request_id": third.event.request_id,
            "alert": "destination_failing",
            "account_id": str(destination.account_id),
            "event_id": str(third.event_id),
            "delivery_id": str(third.delivery_id),
            "destination_id": destination.id,
            "consecutive_failures": 3,
            "status_code": 500,
            "error": "destination answered HTTP 500",
        }
    ]


def test_a_success_resets_the_count_and_the_alert_comes_again(client, receiver, settings, json_log):
    """Two failures, a success (count back to 0), then two failures more alert again at 2."""
    settings.DATAPUSHER_ALERT_AFTER_FAILURES = 2
    answers = iter([500, 500, 200, 500, 500])
    receiver.respond = lambda handler: _answer(handler, next(answers))
    destination = DestinationFactory(url=f"{receiver.url}/in")
    account = destination.account  # holds its token
    counts = []
    for _ in range(5):
        assert ingest(client, account).status_code == 200
        destination.refresh_from_db()
        counts.append(destination.consecutive_failures)
    assert counts == [1, 2, 0, 1, 2]
    assert [message for message, _ in _warnings(json_log)].count("destination keeps failing") == 2


def test_a_retrying_failure_counts_but_does_not_alert_as_failed_for_good(
    client, receiver, settings, json_log, published
):
    """With a broker a 500 is retried later: counted on the destination, no failed-for-good line."""
    settings.CELERY_BROKER_URL = "redis://broker.invalid:6379/0"
    receiver.respond = lambda handler: _answer(handler, 500)
    destination = DestinationFactory(url=f"{receiver.url}/in")
    ingest(client, destination.account)
    assert Delivery.objects.get().status == "pending"
    assert Destination.objects.get().consecutive_failures == 1
    assert _warnings(json_log) == []


def test_the_notification_reaches_the_alert_url(client, receiver, settings, notifier):
    """DATAPUSHER_ALERT_URL: the failed-for-good alert POSTed as JSON (type, ids, error, time), with
    the product's User-Agent; the delivery's own request is the only other one."""
    settings.DATAPUSHER_ALERT_URL = f"{receiver.url}/alerts"
    receiver.respond = _fail_but_take_alerts
    destination = DestinationFactory(url=f"{receiver.url}/in")
    response = ingest(client, destination.account)
    assert notifier.wait_idle(10)
    delivery = Delivery.objects.get()
    assert [(r.method, r.path) for r in receiver.requests] == [("POST", "/in"), ("POST", "/alerts")]
    sent = receiver.requests[1]
    assert (sent.headers["Content-Type"], sent.headers["User-Agent"]) == (
        "application/json",
        f"DataPusher/{__version__}",
    )
    body = json.loads(sent.body)
    assert datetime.fromisoformat(body.pop("time")).utcoffset() is not None
    assert body == {
        "type": "delivery_failed",
        "account_id": str(destination.account_id),
        "event_id": response.json()["event_id"],
        "delivery_id": str(delivery.delivery_id),
        "destination_id": destination.id,
        "request_id": response["X-Request-ID"],
        "attempts": 1,
        "status_code": 500,
        "error": "destination answered HTTP 500",
    }


def test_a_notification_answered_with_an_error_is_logged(client, receiver, settings, notifier, json_log):
    """The operator's endpoint answers 503: a WARNING naming the status (not the URL), no retry."""
    settings.DATAPUSHER_ALERT_URL = f"{receiver.url}/alerts?key=k3y"
    receiver.respond = lambda handler: _answer(handler, 503 if handler.path.startswith("/alerts") else 500)
    destination = DestinationFactory(url=f"{receiver.url}/in")
    ingest(client, destination.account)
    assert notifier.wait_idle(10)
    assert [r.path for r in receiver.requests] == ["/in", "/alerts?key=k3y"]
    assert ("alert notification not delivered: HTTP 503", "delivery_failed") in _warnings(json_log)
    assert "k3y" not in json_log.stream.getvalue()


def test_an_alert_url_that_never_answers_holds_up_nothing(
    client, receiver, settings, notifier, silent_listener, json_log
):
    """The operator's endpoint accepts and never answers: the ingest has answered, its delivery
    recorded, while the notification still waits; it then fails within the read timeout, logged."""
    port, accepted = silent_listener.port, silent_listener.accepted
    settings.DATAPUSHER_ALERT_URL = f"http://127.0.0.1:{port}/alerts"
    settings.DATAPUSHER_READ_TIMEOUT = 3
    receiver.respond = lambda handler: _answer(handler, 500)
    destination = DestinationFactory(url=f"{receiver.url}/in")
    response = ingest(client, destination.account)
    assert response.status_code == 200
    assert response.json()["deliveries"][0]["status"] == "failed"
    wait_until(lambda: accepted, 5, "the notification never connected")
    assert not notifier.wait_idle(0)  # answered while the notification waits
    assert notifier.wait_idle(15)
    assert ("alert notification not delivered: read timed out after 3s", "delivery_failed") in _warnings(
        json_log
    )


def test_a_full_notification_queue_drops_with_a_warning(
    settings, monkeypatch, notifier, silent_listener, json_log
):
    """Queue of 1, the thread stuck on the first: the second waits, the third is dropped, logged."""
    port, accepted = silent_listener.port, silent_listener.accepted
    settings.DATAPUSHER_ALERT_URL = f"http://127.0.0.1:{port}/alerts"
    settings.DATAPUSHER_READ_TIMEOUT = 1
    monkeypatch.setattr(alerts, "NOTIFICATION_QUEUE_SIZE", 1)
    notifier.put(settings.DATAPUSHER_ALERT_URL, {"type": "delivery_failed", "n": 1})
    wait_until(lambda: accepted, 5, "the first notification never connected")
    notifier.put(settings.DATAPUSHER_ALERT_URL, {"type": "delivery_failed", "n": 2})
    notifier.put(settings.DATAPUSHER_ALERT_URL, {"type": "delivery_failed", "n": 3})
    assert _warnings(json_log) == [("alert notification dropped: 1 are waiting already", "delivery_failed")]
    assert notifier.wait_idle(10)  # the other two time out (1 s each), logged within this test
