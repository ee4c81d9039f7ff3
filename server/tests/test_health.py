"""GET /healthz and /readyz: what each check answers, each bounded by DATAPUSHER_READY_TIMEOUT."""

import os
import socket
import threading
import time
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from datapusher import health
from server import broker
from server.management.commands import dispatch as dispatch_command
from server.models import DispatcherHeartbeat
from server.services.dispatch import dispatcher_beat
from server.tests.conftest import service_missing
from server.tests.factories import DispatcherHeartbeatFactory
from server.tests.helpers import closed_port, http_call

# A broker that is there, in a Redis database no other suite flushes; nothing here writes to it.
LIVE_BROKER = "redis://127.0.0.1:6379/9"


def answer(
    status: str, database: str = "ok", broker: str = "not configured", dispatcher: str = "not running"
):
    """The body of /readyz."""
    return {"status": status, "checks": {"database": database, "broker": broker, "dispatcher": dispatcher}}


@pytest.fixture(autouse=True)
def link(monkeypatch, settings) -> broker._Link:
    """A fresh broker link for each test, so that one left resting cannot answer for the next."""
    fresh = broker._Link()
    monkeypatch.setattr(broker, "_link", fresh)
    return fresh


def test_healthz_is_ok_without_touching_the_database(client):
    """/healthz answers 200 {"status": "ok"} with no query at all."""
    response = client.get("/healthz")  # no database access is allowed in this test
    assert (response.status_code, response["Content-Type"], response.json()) == (
        200,
        "application/json",
        {"status": "ok"},
    )


def test_health_endpoints_answer_get_and_head_only(client):
    """HEAD /healthz: 200; POST /healthz and /readyz: 405 with Allow: GET, HEAD."""
    assert client.head("/healthz").status_code == 200
    for path in ("/healthz", "/readyz"):
        response = client.post(path)
        assert (response.status_code, response["Allow"]) == (405, "GET, HEAD")


@pytest.mark.django_db(transaction=True)
def test_readyz_in_sync_mode_without_broker_or_dispatcher_is_ready(client):
    """Sync mode, no broker, no dispatcher ever: 200, broker "not configured", dispatcher "not running"."""
    response = client.get("/readyz")
    assert (response.status_code, response.json()) == (200, answer("ready"))


@pytest.mark.django_db(transaction=True)
def test_readyz_with_a_fresh_heartbeat_reports_the_dispatcher_ok(client):
    """A dispatcher that beat just now: "ok"."""
    dispatcher_beat(name="host:1")
    response = client.get("/readyz")
    assert (response.status_code, response.json()["checks"]["dispatcher"]) == (200, "ok")


@pytest.mark.django_db(transaction=True)
def test_readyz_with_only_stale_heartbeats_is_not_ready(client, settings):
    """The newest beat older than 5 dispatch intervals (and 10 s): 503, the dispatcher stale."""
    settings.DATAPUSHER_DISPATCH_INTERVAL = 4
    DispatcherHeartbeatFactory(beat_at=timezone.now() - timedelta(seconds=21))
    DispatcherHeartbeatFactory(beat_at=timezone.now() - timedelta(hours=1))
    response = client.get("/readyz")
    assert (response.status_code, response.json()) == (
        503,
        {
            "status": "not ready",
            "checks": {"database": "ok", "broker": "not configured", "dispatcher": "stale"},
        },
    )
    DispatcherHeartbeatFactory(beat_at=timezone.now() - timedelta(seconds=19))
    assert client.get("/readyz").status_code == 200


@pytest.mark.django_db(transaction=True)
def test_a_beat_rewrites_its_own_row(settings):
    """Two beats of one dispatcher leave one row, with the second beat's time."""
    dispatcher_beat(name="host:7")
    first = DispatcherHeartbeat.objects.get().beat_at
    dispatcher_beat(name="host:7")
    assert DispatcherHeartbeat.objects.count() == 1
    assert DispatcherHeartbeat.objects.get().beat_at > first


@pytest.mark.django_db(transaction=True)
def test_a_dispatcher_beats_each_round_and_forgets_its_beat_on_exit(settings, monkeypatch):
    """`manage.py dispatch --once`: its round writes its host:pid beat, and no row is left once it ends."""
    settings.CELERY_BROKER_URL = LIVE_BROKER  # nothing is pending: the broker is not called
    seen = []

    def beat(*, name: str) -> None:
        dispatcher_beat(name=name)
        seen.append(list(DispatcherHeartbeat.objects.values_list("name", flat=True)))

    monkeypatch.setattr(dispatch_command, "dispatcher_beat", beat)
    call_command("dispatch", "--once")
    assert seen == [[f"{socket.gethostname()}:{os.getpid()}"]]
    assert not DispatcherHeartbeat.objects.exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("mode", ["queue", "sync"])
def test_readyz_with_a_broker_needs_a_dispatcher(client, settings, mode):
    """A live broker and no dispatcher: 503, the dispatcher not running (in sync mode too: retries
    wait for it to publish them); with one beating, 200."""
    settings.DATAPUSHER_DELIVERY_MODE = mode
    settings.CELERY_BROKER_URL = LIVE_BROKER
    if broker.queue_depth() is None:
        service_missing(f"Redis is not reachable at {LIVE_BROKER}")
    response = client.get("/readyz")
    assert (response.status_code, response.json()) == (
        503,
        answer("not ready", broker="ok"),
    )
    dispatcher_beat(name="host:2")
    response = client.get("/readyz")
    assert (response.status_code, response.json()) == (
        200,
        answer("ready", broker="ok", dispatcher="ok"),
    )


@pytest.mark.django_db(transaction=True)
def test_a_silent_broker_makes_readyz_503_within_the_bound(client, settings, silent_port):
    """A broker that accepts and never answers (its own bound longer than readiness'): 503 within
    DATAPUSHER_READY_TIMEOUT, the broker unavailable."""
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{silent_port}/0"
    settings.DATAPUSHER_PUBLISH_TIMEOUT = 30
    settings.DATAPUSHER_READY_TIMEOUT = 0.5
    started = time.monotonic()
    response = client.get("/readyz")
    took = time.monotonic() - started
    assert (response.status_code, response.json()) == (
        503,
        {
            "status": "not ready",
            "checks": {"database": "ok", "broker": "unavailable", "dispatcher": "not running"},
        },
    )
    assert took < 0.5 + 1.0


def test_healthz_is_ok_and_readyz_503_when_the_database_refuses(gunicorn):
    """Served by gunicorn with a database that refuses connections: /healthz 200, /readyz 503 with the
    database unavailable and the dispatcher unknown."""
    server = gunicorn(database_url=f"postgres://postgres@127.0.0.1:{closed_port()}/x")
    health = http_call(server.url, "GET", "/healthz", headers={})
    ready = http_call(server.url, "GET", "/readyz", headers={})
    assert (health.status, health.json) == (200, {"status": "ok"})
    assert (ready.status, ready.json) == (
        503,
        {
            "status": "not ready",
            "checks": {"database": "unavailable", "broker": "not configured", "dispatcher": "unknown"},
        },
    )


def test_a_silent_database_makes_readyz_503_within_the_bound(gunicorn, silent_port):
    """A database that accepts and never answers (connect timeout 5 s): /readyz 503 within
    DATAPUSHER_READY_TIMEOUT (1 s here), the database unavailable."""
    server = gunicorn(
        database_url=f"postgres://postgres@127.0.0.1:{silent_port}/x", DATAPUSHER_READY_TIMEOUT="1"
    )
    started = time.monotonic()
    ready = http_call(server.url, "GET", "/readyz", headers={})
    took = time.monotonic() - started
    assert (ready.status, ready.json["checks"]["database"]) == (503, "unavailable")
    assert took < 1 + 2.0


def test_a_stalled_check_holds_one_thread_however_often_readyz_is_asked(client, settings, monkeypatch):
    """A database check that never ends: every probe answers 503 within the bound, and they all wait
    on the one check already running rather than each starting a thread of its own."""
    settings.DATAPUSHER_READY_TIMEOUT = 0.2
    release, calls = threading.Event(), []

    def stalled() -> dict[str, str]:
        calls.append(1)
        release.wait(30)
        return {"database": "ok", "dispatcher": "not running"}

    monkeypatch.setattr(health, "_database_checks", stalled)
    try:
        answers = [client.get("/readyz") for _ in range(3)]
        assert [(a.status_code, a.json()["checks"]["database"]) for a in answers] == [
            (503, "unavailable")
        ] * 3
        assert len(calls) == 1
        assert [t.name for t in threading.enumerate()].count("readyz-database") == 1
    finally:
        release.set()
