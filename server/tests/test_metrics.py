"""GET /metrics: who may scrape, and exact counts read back from Prometheus' text format."""

import http.client
import secrets
import subprocess
import sys
from collections.abc import Iterable
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.db import OperationalError
from django.utils import timezone
from prometheus_client.core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from accounts.tests.factories import AccountFactory
from destinations.tests.factories import DestinationFactory
from server.metrics import _ProcessFiles
from server.models import Delivery
from server.tests.conftest import ROOT, manage, wait_until, web_env
from server.tests.helpers import INGEST_URL, http_call, ingest, pending_delivery

INGESTS = "datapusher_ingests_total"
DELIVERIES = "datapusher_deliveries_total"
ATTEMPTS = "datapusher_attempt_duration_seconds_count"
PENDING = "datapusher_deliveries_pending"
OLDEST = "datapusher_oldest_pending_delivery_age_seconds"
CONTENT_TYPE = "text/plain; version=1.0.0; charset=utf-8"


def samples(families: Iterable[Metric]) -> dict[tuple, float]:
    """Every sample of some metric families: (name, (label, value), ...) -> value."""
    return {
        (sample.name, *sorted(sample.labels.items())): sample.value
        for family in families
        for sample in family.samples
    }


def scrape(client, **extra) -> dict[tuple, float]:
    """GET /metrics through the test client, parsed."""
    response = client.get("/metrics", **extra)
    assert (response.status_code, response["Content-Type"]) == (200, CONTENT_TYPE)
    return samples(text_string_to_metric_families(response.content.decode()))


def http_scrape(base_url: str, token: str) -> dict[tuple, float]:
    """GET /metrics from a real server with the token, parsed."""
    address = urlsplit(base_url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=30)
    try:
        connection.request("GET", "/metrics", headers={"Authorization": f"Bearer {token}"})
        response = connection.getresponse()
        assert (response.status, response.headers["Content-Type"]) == (200, CONTENT_TYPE)
        return samples(text_string_to_metric_families(response.read().decode()))
    finally:
        connection.close()


def change(before: dict, after: dict, name: str, **labels: str) -> float:
    key = (name, *sorted(labels.items()))
    return after[key] - before.get(key, 0)


@pytest.mark.django_db(transaction=True)
def test_ingests_are_counted_by_outcome(client, receiver):
    """One accepted, two invalid (a bad body, a GET), one reused event id with another body, one
    over the account's limit, one bad token."""
    account = AccountFactory(rate_limit="3/hour")
    DestinationFactory(account=account, url=f"{receiver.url}/in")
    before = scrape(client)
    assert ingest(client, account, event_id="once").status_code == 200
    assert ingest(client, account, b"[1]").status_code == 400
    assert ingest(client, account, b'{"other": 1}', event_id="once").status_code == 409
    assert ingest(client, account).status_code == 429
    assert (
        client.post(
            INGEST_URL, b"{}", content_type="application/json", headers={"CL-X-TOKEN": "x"}
        ).status_code
        == 401
    )
    assert client.get(INGEST_URL).status_code == 405
    after = scrape(client)
    changes = {
        outcome: change(before, after, INGESTS, outcome=outcome)
        for outcome in (
            "accepted",
            "invalid",
            "conflict",
            "rate_limited",
            "unauthorized",
            "too_large",
            "error",
        )
    }
    assert changes == {
        "accepted": 1,
        "invalid": 2,
        "conflict": 1,
        "rate_limited": 1,
        "unauthorized": 1,
        "too_large": 0,
        "error": 0,
    }


@pytest.mark.django_db
def test_an_ingest_the_database_fails_is_counted_as_an_error(client, monkeypatch):
    """The database failing under the ingest: 503, and one more ingest with outcome "error"."""
    before = scrape(client)

    def unavailable(**_):
        raise OperationalError("connection refused")

    monkeypatch.setattr("server.views.ingest_target_by_token", unavailable)
    response = client.post(INGEST_URL, b"{}", content_type="application/json", headers={"CL-X-TOKEN": "x"})
    assert response.status_code == 503
    assert change(before, scrape(client), INGESTS, outcome="error") == 1


@pytest.mark.django_db(transaction=True)
def test_deliveries_reaching_a_final_status_and_their_attempts_are_counted(client, receiver):
    """An ingest to two destinations, one answering 200 and one 500 (final: no broker, no retries):
    one succeeded, one failed, two attempts observed in the histogram."""
    account = AccountFactory()
    DestinationFactory(account=account, url=f"{receiver.url}/ok")
    DestinationFactory(account=account, url=f"{receiver.url}/broken")

    def respond(handler):
        handler.send_response(200 if handler.path == "/ok" else 500)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    receiver.respond = respond
    before = scrape(client)
    assert ingest(client, account).status_code == 200
    after = scrape(client)
    assert change(before, after, DELIVERIES, status="succeeded") == 1
    assert change(before, after, DELIVERIES, status="failed") == 1
    assert change(before, after, ATTEMPTS) == 2
    assert len(receiver.requests) == 2


@pytest.mark.django_db(transaction=True)
def test_a_retryable_failure_with_retries_left_is_not_final(client, receiver, settings, monkeypatch):
    """With a broker, a 500 leaves the delivery pending: its attempt is observed, no final status counted."""
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"  # configured; publishing is not what is tested
    monkeypatch.setattr("server.services.dispatch.deliveries_hand_over", lambda **_: 0)
    account = AccountFactory()
    DestinationFactory(account=account, url=f"{receiver.url}/broken")
    receiver.respond = lambda handler: (
        handler.send_response(500),
        handler.send_header("Content-Length", "0"),
        handler.end_headers(),
    )
    before = scrape(client)
    assert ingest(client, account).json()["deliveries"][0]["status"] == "pending"
    after = scrape(client)
    assert {key: after[key] - before.get(key, 0) for key in after if key[0] == DELIVERIES} == {
        (DELIVERIES, ("status", "succeeded")): 0,
        (DELIVERIES, ("status", "failed")): 0,
    }
    assert change(before, after, ATTEMPTS) == 1


@pytest.mark.django_db(transaction=True)
def test_the_backlog_is_read_at_scrape_time_in_one_query(client, django_assert_num_queries):
    """Two pending deliveries (the oldest created 10 minutes ago) and a succeeded one: pending 2, the
    oldest 600 s old; two queries for the scrape (the backlog, the circuits not closed)."""
    assert [scrape(client)[(PENDING,)], scrape(client)[(OLDEST,)]] == [0, 0]
    pending_delivery(created_at=timezone.now() - timedelta(minutes=10))
    pending_delivery()
    pending_delivery(status=Delivery.Status.SUCCEEDED, created_at=timezone.now() - timedelta(hours=1))
    with django_assert_num_queries(2):
        after = scrape(client)
    assert after[(PENDING,)] == 2
    assert 600 <= after[(OLDEST,)] < 660


@pytest.mark.django_db
def test_without_the_database_a_scrape_has_the_counters_but_not_the_backlog(client, monkeypatch):
    """The backlog query failing: 200 with the counters, and neither backlog gauge."""

    def unavailable():
        raise OperationalError("connection refused")

    monkeypatch.setattr("server.metrics.deliveries_pending_backlog", unavailable)
    scraped = scrape(client)
    assert (INGESTS, ("outcome", "accepted")) in scraped
    assert [key for key in scraped if key[0] in (PENDING, OLDEST)] == []


@pytest.mark.django_db
def test_with_a_token_a_scrape_needs_it(client, settings):
    """DATAPUSHER_METRICS_TOKEN set: no header, another token or another scheme get 401 with
    WWW-Authenticate; the token as a bearer gets the metrics."""
    settings.DATAPUSHER_METRICS_TOKEN = secrets.token_urlsafe(24)
    refused = {"detail": "Authorization: Bearer <DATAPUSHER_METRICS_TOKEN> required."}
    for authorization in ("", "Bearer wrong", f"Token {settings.DATAPUSHER_METRICS_TOKEN}", "Bearer"):
        response = client.get("/metrics", headers={"Authorization": authorization} if authorization else {})
        assert (response.status_code, response["WWW-Authenticate"], response.json()) == (
            401,
            'Bearer realm="metrics"',
            refused,
        )
    scraped = scrape(client, headers={"Authorization": f"Bearer {settings.DATAPUSHER_METRICS_TOKEN}"})
    assert (PENDING,) in scraped


@pytest.mark.django_db
def test_with_a_token_a_loopback_client_needs_it_too(client, settings):
    """A token set: a client on loopback without it gets 401 too."""
    settings.DATAPUSHER_METRICS_TOKEN = secrets.token_urlsafe(24)
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 401


@pytest.mark.django_db
def test_without_a_token_only_this_host_may_scrape(client, settings):
    """No token: loopback clients (IPv4 or IPv6) get the metrics; any other address, and any client
    when a proxy stands in front (NUM_PROXIES), gets 403."""
    forbidden = (403, {"detail": "Set DATAPUSHER_METRICS_TOKEN to scrape from another host."})
    assert (PENDING,) in scrape(client, REMOTE_ADDR="::1")
    response = client.get("/metrics", REMOTE_ADDR="203.0.113.9")
    assert (response.status_code, response.json()) == forbidden
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    response = client.get("/metrics", REMOTE_ADDR="127.0.0.1")
    assert (response.status_code, response.json()) == forbidden


def test_two_gunicorn_processes_and_a_worker_are_summed(gunicorn, tmp_path):
    """gunicorn with 2 processes writing to PROMETHEUS_MULTIPROC_DIR, and a worker writing to a
    subdirectory: one scrape reports the sum of all (each process's own count read from its file)."""
    metrics_dir = tmp_path / "metrics"
    (metrics_dir / "worker").mkdir(parents=True)
    database_url = f"sqlite:///{tmp_path / 'site.sqlite3'}"
    token = secrets.token_urlsafe(24)
    overrides = {"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir), "DATAPUSHER_METRICS_TOKEN": token}
    manage("migrate", "--noinput", env=web_env(database_url=database_url))
    server = gunicorn(database_url=database_url, workers=2, **overrides)

    def per_process() -> list[float]:
        counts = []
        for path in sorted(metrics_dir.glob("counter_*.db")):
            merged = samples(MultiProcessCollector.merge([str(path)], accumulate=True))
            counts.append(merged.get((INGESTS, ("outcome", "unauthorized")), 0))
        return counts

    sent = 0

    def both_processes_answered() -> bool:
        nonlocal sent
        answer = http_call(server.url, "POST", INGEST_URL, headers={"CL-X-TOKEN": "unknown"}, body=b"{}")
        assert answer.status == 401
        sent += 1
        return len([count for count in per_process() if count]) == 2

    wait_until(both_processes_answered, 60, "the second gunicorn process never answered an ingest")
    worker = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from server.metrics import DELIVERIES; "
            "DELIVERIES.labels(status='failed').inc(3)",
        ],
        cwd=ROOT,
        env={**web_env(database_url=database_url), "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir / "worker")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert worker.returncode == 0, worker.stderr
    scraped = http_scrape(server.url, token)
    assert scraped[(INGESTS, ("outcome", "unauthorized"))] == sent == sum(per_process())
    assert scraped[(DELIVERIES, ("status", "failed"))] == 3


def test_a_workers_attempts_are_counted_in_its_subdirectory(client, worker, receiver, tmp_path):
    """Queue mode on PostgreSQL: a Celery worker writing to METRICS_DIR/worker counts the attempt
    it made and the delivery it finished; a scrape of METRICS_DIR reads them back."""
    metrics_dir = tmp_path / "metrics"
    (metrics_dir / "worker").mkdir(parents=True)
    worker(PROMETHEUS_MULTIPROC_DIR=str(metrics_dir / "worker"))
    account = AccountFactory()
    DestinationFactory(account=account, url=f"{receiver.url}/in")
    assert ingest(client, account).status_code == 202

    def counted() -> dict[tuple, float]:
        return samples(_ProcessFiles(str(metrics_dir)).collect())

    wait_until(lambda: counted().get((ATTEMPTS,)) == 1, 30, "the worker's attempt was never counted")
    assert Delivery.objects.get().status == Delivery.Status.SUCCEEDED
    scraped = counted()
    assert (scraped[(DELIVERIES, ("status", "succeeded"))], scraped[(DELIVERIES, ("status", "failed"))]) == (
        1,
        0,
    )
    assert len(receiver.requests) == 1
