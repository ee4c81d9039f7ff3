"""Structured logs: one line per ingest and per attempt, each carrying the request id — the
X-Request-ID given (a UUID) or generated, returned in the response and stored with the event so that
the workers' lines about its deliveries carry it too."""

import json
import logging
import re
import socket
from datetime import datetime, timedelta

import pytest
from django.db import OperationalError
from django.utils import timezone

from accounts.tests.factories import AccountFactory
from datapusher.logs import TextFormatter, current_request_id
from destinations.tests.factories import DestinationFactory
from server.models import Delivery, Event
from server.tasks import deliver
from server.tests.conftest import production_env, python, wait_until
from server.tests.helpers import http_call, ingest

pytestmark = pytest.mark.django_db
REQUEST_ID = "0b5c6f1e-3d2a-4c8b-9e7f-1a2b3c4d5e6f"
GENERATED = re.compile(r"[0-9a-f]{32}")
LOGGERS = ("server.ingest", "server.services.delivery", "server.services.alerts")


def _fail(handler) -> None:
    handler.send_response(500)
    handler.send_header("Content-Length", "4")
    handler.end_headers()
    handler.wfile.write(b"down")


def _ok_or_fail(handler) -> None:
    """200 "ok" for /ok, 500 "down" for anything else."""
    if handler.path == "/ok":
        handler.send_response(200)
        handler.send_header("Content-Length", "2")
        handler.end_headers()
        handler.wfile.write(b"ok")
    else:
        _fail(handler)


def _without_timing(line: dict) -> dict:
    """The line with its timestamp and duration checked for shape and left out."""
    line = dict(line)
    assert datetime.fromisoformat(line.pop("timestamp")).utcoffset() == timedelta(0)
    if "duration_ms" in line:
        assert isinstance(line.pop("duration_ms"), int)
    return line


def refused_ingest_line(status: int) -> dict:
    """The ingest's line (timing left out) for an answer that stored nothing, with our request id."""
    return {
        "level": "INFO",
        "logger": "server.ingest",
        "message": "ingest",
        "request_id": REQUEST_ID,
        "event_id": None,
        "account_id": None,
        "destinations": None,
        "status": status,
    }


def test_an_ingest_to_two_destinations_one_failing_logs_these_lines(client, receiver, json_log):
    """Per attempt and for the ingest, the exact fields; the failure final (no broker) also alerts;
    every line carries the request id given, which the response returns."""
    receiver.respond = _ok_or_fail
    account = AccountFactory()
    ok = DestinationFactory(
        account=account, url=f"{receiver.url}/ok", headers={"Authorization": "Bearer s3cr3t-v4lue"}
    )
    failing = DestinationFactory(
        account=account,
        url=f"http://user:pa55@127.0.0.1:{receiver.url.rsplit(':', 1)[1]}/fail?key=k3y",
        http_method="PUT",
    )
    response = ingest(client, account, HTTP_X_REQUEST_ID=REQUEST_ID)
    assert response.status_code == 200
    assert response["X-Request-ID"] == REQUEST_ID
    event_id = response.json()["event_id"]
    ok_delivery, failed_delivery = Delivery.objects.order_by("destination_id")
    assert [_without_timing(line) for line in json_log.lines(*LOGGERS)] == [
        {
            "level": "INFO",
            "logger": "server.services.delivery",
            "message": "attempt",
            "request_id": REQUEST_ID,
            "event_id": event_id,
            "delivery_id": str(ok_delivery.delivery_id),
            "destination_id": ok.id,
            "method": "POST",
            "attempt": 1,
            "outcome": "succeeded",
            "status_code": 200,
            "error": None,
        },
        {
            "level": "INFO",
            "logger": "server.services.delivery",
            "message": "attempt",
            "request_id": REQUEST_ID,
            "event_id": event_id,
            "delivery_id": str(failed_delivery.delivery_id),
            "destination_id": failing.id,
            "method": "PUT",
            "attempt": 1,
            "outcome": "failed",
            "status_code": 500,
            "error": "destination answered HTTP 500",
        },
        {
            "level": "WARNING",
            "logger": "server.services.alerts",
            "message": "delivery failed for good",
            "request_id": REQUEST_ID,
            "alert": "delivery_failed",
            "account_id": str(account.account_id),
            "event_id": event_id,
            "delivery_id": str(failed_delivery.delivery_id),
            "destination_id": failing.id,
            "attempts": 1,
            "status_code": 500,
            "error": "destination answered HTTP 500",
        },
        {
            "level": "INFO",
            "logger": "server.ingest",
            "message": "ingest",
            "request_id": REQUEST_ID,
            "event_id": event_id,
            "account_id": str(account.account_id),
            "destinations": 2,
            "status": 200,
        },
    ]
    text = json_log.stream.getvalue()
    assert [part for part in ("s3cr3t-v4lue", "pa55", "k3y", "/fail", "/ok") if part in text] == []


@pytest.mark.parametrize(
    "given",
    [
        None,
        "not-a-uuid",
        "0b5c6f1e 3d2a\nforged line",
        # uuid.UUID() reads these as a UUID; kept, they were stored, echoed and logged at any length.
        "urn:uuid:" * 20 + "0b5c6f1e-3d2a-4c8b-9e7f-" + "-" * 300 + "1a2b3c4d5e6f",
        "{0b5c6f1e-3d2a-4c8b-9e7f-1a2b3c4d5e6f}",
    ],
    ids=["none", "not-a-uuid", "forged-line", "padded-uuid", "braced-uuid"],
)
def test_without_a_valid_x_request_id_one_is_generated_returned_and_stored(client, json_log, given):
    """No header, or one that is not a UUID: a new id (32 hex digits) in the response, on the
    ingest's line and on the event."""
    account = AccountFactory()
    extra = {} if given is None else {"HTTP_X_REQUEST_ID": given}
    response = ingest(client, account, **extra)
    assert response.status_code == 200
    request_id = response["X-Request-ID"]
    assert GENERATED.fullmatch(request_id)
    [line] = json_log.lines("server.ingest")
    assert (line["request_id"], line["destinations"], line["status"]) == (request_id, 0, 200)
    assert Event.objects.get().request_id == request_id
    assert given is None or given not in json_log.stream.getvalue()  # a header value is never logged


def test_a_refused_ingest_is_logged_with_its_status_and_no_event(client, json_log):
    """A wrong token: one line, status 401, no account, no event."""
    response = client.post(
        "/server/incoming_data", b"{}", content_type="application/json", HTTP_X_REQUEST_ID=REQUEST_ID
    )
    assert response.status_code == 401
    assert response["X-Request-ID"] == REQUEST_ID
    assert [_without_timing(line) for line in json_log.lines("server.ingest")] == [refused_ingest_line(401)]


def test_an_ingest_that_raises_is_logged_with_no_status(client, json_log, monkeypatch):
    """The database fails under the view: the middleware answers 503 (with the request id), and the
    ingest's line says no status of its own."""

    def unavailable(**_):
        raise OperationalError("connection refused")

    monkeypatch.setattr("server.views.ingest_target_by_token", unavailable)
    response = client.post(
        "/server/incoming_data", b"{}", content_type="application/json", HTTP_X_REQUEST_ID=REQUEST_ID
    )
    assert (response.status_code, response["X-Request-ID"]) == (503, REQUEST_ID)
    [line] = json_log.lines("server.ingest")
    assert (line["request_id"], line["account_id"], line["status"]) == (REQUEST_ID, None, None)


def test_a_line_logged_while_sending_carries_the_request_id(client, json_log, monkeypatch):
    """The send runs on the delivery pool's threads; what it logs there still names the request."""

    def broken(**_):
        raise RuntimeError("boom")

    monkeypatch.setattr("server.http.send", broken)
    destination = DestinationFactory(url="https://hooks.example.com/in?key=k3y")
    ingest(client, destination.account, HTTP_X_REQUEST_ID=REQUEST_ID)
    [line] = json_log.lines("server.http")
    assert (line["level"], line["message"], line["request_id"]) == (
        "ERROR",
        "unexpected error sending to https://hooks.example.com/in",
        REQUEST_ID,
    )


def _queued_ingest(client, settings, receiver, capture_on_commit) -> tuple[Delivery, str]:
    """A queue-mode ingest to one destination answering 500; its delivery and request id."""
    settings.DATAPUSHER_DELIVERY_MODE = "queue"
    settings.CELERY_BROKER_URL = "redis://broker.invalid:6379/0"  # publishing is recorded (published)
    receiver.respond = _fail
    destination = DestinationFactory(url=f"{receiver.url}/in")
    with capture_on_commit(execute=True):
        response = ingest(client, destination.account, HTTP_X_REQUEST_ID=REQUEST_ID)
    assert response.status_code == 202
    return Delivery.objects.get(), response["X-Request-ID"]


def _attempt_lines(json_log) -> list[tuple[str | None, int, str]]:
    return [
        (line["request_id"], line["attempt"], line["outcome"])
        for line in json_log.lines("server.services.delivery")
        if line["message"] == "attempt"
    ]


def test_the_workers_lines_carry_the_ingests_request_id_on_every_retry(
    client, settings, receiver, json_log, published, django_capture_on_commit_callbacks
):
    """The worker's task, outside any request, for the first attempt and for a retry published
    later (by the dispatcher): its lines carry the id of the request that ingested the event."""
    delivery, request_id = _queued_ingest(client, settings, receiver, django_capture_on_commit_callbacks)
    assert published == [delivery.pk]
    deliver(delivery.pk)
    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())  # the retry is due
    deliver(delivery.pk)
    assert _attempt_lines(json_log) == [(request_id, 1, "retrying"), (request_id, 2, "retrying")]
    assert current_request_id() is None  # the task leaves no id behind


def test_a_redelivery_sent_by_a_worker_carries_the_ingests_request_id(
    client, settings, receiver, json_log, published, django_capture_on_commit_callbacks, api_client
):
    """Queue mode: POST .../redeliver/ is a request of its own (its id in its answer); the worker's
    attempt it leads to carries the ingest's id."""
    delivery, request_id = _queued_ingest(client, settings, receiver, django_capture_on_commit_callbacks)
    Delivery.objects.filter(pk=delivery.pk).update(status="failed", next_attempt_at=None)
    response = api_client.post(f"/api/events/{delivery.event_id}/redeliver/")
    assert response.status_code == 202
    assert GENERATED.fullmatch(response["X-Request-ID"])
    deliver(delivery.pk)
    assert _attempt_lines(json_log) == [(request_id, 1, "retrying")]


def test_the_text_format_puts_the_request_id_and_the_lines_fields_on_one_line():
    """make run and the tests: time, level, [request id], logger, message, then key=value."""
    record = logging.LogRecord("server.ingest", logging.INFO, __file__, 1, "ingest", None, None)
    record.created = 1796083200.5
    record.msecs = 500
    record.request_id = REQUEST_ID
    record.event_id, record.status = "e1", 200
    record.request = "<WSGIRequest: GET '/server/incoming_data?token=k3y'>"  # as Django attaches it
    formatted = TextFormatter().format(record)
    time, line = formatted[:23], formatted[24:]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,500", time)
    assert line == f"INFO [{REQUEST_ID}] server.ingest: ingest event_id=e1 status=200"


def test_make_serve_logs_one_json_object_a_line(services, tmp_path):
    """`make serve` (gunicorn, the production settings) logs JSON: the ingest's line, common fields
    first, with the request id the answer returns."""
    env = {
        key: value
        for key, value in production_env(database_url=f"sqlite:///{tmp_path / 'db.sqlite3'}").items()
        if key != "DATAPUSHER_LOG_FORMAT"
    }
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    argv = ["make", "--no-print-directory", "serve", f"BIND=127.0.0.1:{port}", "WEB_CONCURRENCY=1"]
    web = services(argv, env, lambda log: "Booting worker with pid" in log)
    answer = http_call(
        f"http://127.0.0.1:{port}", "GET", "/server/incoming_data", headers={"X-Request-ID": REQUEST_ID}
    )
    assert (answer.status, answer.headers["X-Request-ID"]) == (405, REQUEST_ID)
    wait_until(lambda: '"logger": "server.ingest"' in web.log.read_text(), 10, "no ingest line")
    [line] = [
        json.loads(text) for text in web.log.read_text().splitlines() if '"logger": "server.ingest"' in text
    ]
    assert list(line)[:5] == ["timestamp", "level", "logger", "message", "request_id"]
    assert _without_timing(line) == refused_ingest_line(405)


def test_an_alert_url_that_is_not_http_stops_the_process_without_repeating_it(tmp_path):
    """DATAPUSHER_ALERT_URL must be http(s); the error does not repeat the URL (it may hold a token)."""
    env = production_env(
        database_url=f"sqlite:///{tmp_path / 'db'}", DATAPUSHER_ALERT_URL="ftp://alerts.example.com/t0ken"
    )
    finished = python("-c", "import datapusher.settings", env=env)
    assert finished.returncode == 1
    assert "ImproperlyConfigured: DATAPUSHER_ALERT_URL must be an http(s) URL." in finished.stderr
    assert "t0ken" not in finished.stderr


def test_django_request_lines_hold_the_path_but_not_the_query_string(client, json_log):
    """Django logs a 4xx with the request object: the line names the path, not its query."""
    response = client.get("/server/nowhere?token=k3y", HTTP_X_REQUEST_ID=REQUEST_ID)
    assert response.status_code == 404
    [line] = json_log.lines("django.request")
    assert _without_timing(line) == {
        "level": "WARNING",
        "logger": "django.request",
        "message": "Not Found: /server/nowhere",
        "request_id": REQUEST_ID,
        "status_code": 404,
    }
    assert "k3y" not in json_log.stream.getvalue()
