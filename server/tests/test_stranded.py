"""The database lost in the middle of an ingest: the sender gets the contract's 503, and the delivery it
left pending (already sent, outcome never written) is found and finished later, at least once.

Runs on PostgreSQL, whose connections can be killed from outside (pg_terminate_backend); CI runs it.
"""

import json
import urllib.error
import urllib.request
from datetime import timedelta

import psycopg
import pytest
from django.db import connection
from django.utils import timezone

from accounts.tests.factories import AccountFactory
from destinations.tests.factories import DestinationFactory
from server.models import Delivery
from server.services import delivery as delivery_engine
from server.tests.conftest import wait_until


def post_json(url: str, token: str) -> tuple[int, dict, str | None]:
    request = urllib.request.Request(
        url,
        data=b'{"a": 1}',
        method="POST",
        headers={"Content-Type": "application/json", "CL-X-TOKEN": token},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read()), response.headers.get("Retry-After")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read()), err.headers.get("Retry-After")


@pytest.mark.django_db(transaction=True)
def test_database_lost_mid_ingest_answers_503_and_redeliver_finishes_the_delivery(
    live_server, receiver, api_client, settings, monkeypatch
):
    """The receiver gets the request, and at that moment every connection to the database is killed:
    the ingest answers 503 with Retry-After. The delivery stays pending under the ingest's lease;
    once that runs out, an event redelivery sends it again (same webhook-id) and it succeeds."""
    if connection.vendor != "postgresql":
        pytest.skip("kills database connections from outside: runs on PostgreSQL (CI runs it)")
    settings.DATAPUSHER_CONNECT_TIMEOUT, settings.DATAPUSHER_READ_TIMEOUT = 0.5, 1
    monkeypatch.setattr(delivery_engine, "LEASE_GRACE", timedelta(0))  # the lease: 1.5 s + 1 s
    params = connection.get_connection_params()
    dsn = f"host={params['host']} port={params['port']} user={params['user']} dbname={params['dbname']}"
    calls = []

    def kill_the_database_connections_then_answer(handler):
        calls.append(handler.headers["webhook-id"])
        if len(calls) == 1:
            with psycopg.connect(dsn, autocommit=True) as admin:
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
        handler.send_response(200)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    receiver.respond = kill_the_database_connections_then_answer
    account = AccountFactory()
    DestinationFactory(account=account, url=receiver.url)

    status, body, retry_after = post_json(f"{live_server.url}/server/incoming_data", account.app_secret_token)

    assert (status, body, retry_after) == (503, {"success": False, "message": "Service Unavailable"}, "5")
    connection.close()  # this thread's connection was killed too
    stranded = Delivery.objects.get()
    assert (stranded.status, stranded.attempt_count) == ("pending", 0)
    wait_until(
        lambda: not Delivery.objects.filter(lease_expires_at__gt=timezone.now()).exists(),
        10,
        "the ingest's lease never ran out",
    )
    response = api_client.post(f"/api/events/{stranded.event_id}/redeliver/")
    assert response.status_code == 200
    assert [(d["delivery_id"], d["status"], d["attempt_count"]) for d in response.json()] == [
        (str(stranded.delivery_id), "succeeded", 1)
    ]
    assert calls == [str(stranded.delivery_id)] * 2
