"""The per-account ingest rate limit: keyed by the account, counted in shared storage, nothing
stored past it, one account's flood leaving the others alone."""

import json
import os
import socket
import subprocess
import sys
import time
import uuid

import pytest
import redis
from django.conf import settings
from django.test import override_settings
from knox.models import AuthToken
from rest_framework.test import APIClient

from accounts.models import AccountMember
from accounts.tests.factories import AccountFactory
from datapusher.ratelimit import STORAGE_TIMEOUT_SECONDS, limit_wait
from destinations.tests.factories import DestinationFactory
from server.models import Event
from server.tests.conftest import _redis_ready, service_missing
from server.tests.helpers import INGEST_URL, http_call, ingest

pytestmark = pytest.mark.django_db

TOO_MANY = {"success": False, "message": "Too Many Requests"}


@override_settings(DATAPUSHER_INGEST_RATE_LIMIT="3/hour")
def test_past_the_limit_the_ingest_is_429_and_stores_and_sends_nothing(client, mocked):
    """(Windows of an hour in these tests: a minute's could end between two requests.)
    The 4th ingest in the hour gets 429 with Retry-After; no event, no request to the destination."""
    destination = DestinationFactory(url="https://hooks.example.com/in")
    mocked.post("https://hooks.example.com/in", status=200)
    assert [ingest(client, destination.account).status_code for _ in range(3)] == [200] * 3
    refused = ingest(client, destination.account, event_id="the-fourth")
    assert (refused.status_code, refused.json()) == (429, TOO_MANY)
    assert 1 <= int(refused["Retry-After"]) <= 3600
    assert Event.objects.count() == 3
    assert not Event.objects.filter(external_id="the-fourth").exists()
    assert len(mocked.calls) == 3


@override_settings(DATAPUSHER_INGEST_RATE_LIMIT="2/hour")
def test_the_limit_is_per_account(client):
    """One account at its limit does not take another's: each has its own counter."""
    flooding, quiet = AccountFactory(), AccountFactory()
    assert [ingest(client, flooding).status_code for _ in range(3)] == [200, 200, 429]
    assert ingest(client, quiet).status_code == 200


@override_settings(DATAPUSHER_INGEST_RATE_LIMIT="100/second")
def test_an_accounts_own_rate_limit_wins_over_the_default(client):
    """rate_limit on the account replaces DATAPUSHER_INGEST_RATE_LIMIT for it."""
    account = AccountFactory(rate_limit="1/hour")
    assert [ingest(client, account).status_code for _ in range(2)] == [200, 429]


@override_settings(DATAPUSHER_INGEST_RATE_LIMIT=None)
def test_off_limits_nothing(client):
    """DATAPUSHER_INGEST_RATE_LIMIT=off: 60 ingests in a row are all accepted; an account with its
    own rate_limit still has it."""
    account = AccountFactory()
    assert {ingest(client, account).status_code for _ in range(60)} == {200}
    limited = AccountFactory(rate_limit="1/hour")
    assert [ingest(client, limited).status_code for _ in range(2)] == [200, 429]


def test_a_bad_token_is_401_before_any_counting(client):
    """An unknown token is refused as before; it is not an account, so it counts against none."""
    response = client.post(INGEST_URL, b"{}", content_type="application/json", headers={"CL-X-TOKEN": "x"})
    assert response.status_code == 401


@pytest.mark.parametrize(
    ("value", "status"), [("10/minute", 200), ("5/second", 200), (None, 200), ("10 per min", 400)]
)
def test_staff_set_an_accounts_rate_limit(api_client, value, status):
    """Staff may set rate_limit in DRF's rate format (or null for the default); anything else is 400."""
    account = AccountFactory()
    response = api_client.patch(f"/api/accounts/{account.account_id}/", {"rate_limit": value}, format="json")
    assert response.status_code == status
    account.refresh_from_db()
    if status == 200:
        assert account.rate_limit == value
    else:
        assert response.json() == {
            "rate_limit": [
                'Enter a rate such as "10/minute" or "5/second" (per second, minute, hour or day).'
            ]
        }


def test_an_account_admin_cannot_raise_its_own_limit(django_user_model):
    """The limit protects the other accounts: an account admin (not staff) changing it is 400;
    sending it back unchanged (a PUT of what was read) is fine."""
    user = django_user_model.objects.create_user(username="owner")
    account = AccountFactory(rate_limit="10/minute")
    AccountMember.objects.create(account=account, user=user, role="admin")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {AuthToken.objects.create(user=user)[1]}")
    url = f"/api/accounts/{account.account_id}/"
    raised = client.patch(url, {"rate_limit": "1000/second"}, format="json")
    assert (raised.status_code, raised.json()) == (
        400,
        {"rate_limit": ["Only staff can change an account's rate limit."]},
    )
    same = client.put(
        url, {"email": account.email, "account_name": "Renamed", "rate_limit": "10/minute"}, format="json"
    )
    assert same.status_code == 200
    account.refresh_from_db()
    assert (account.account_name, account.rate_limit) == ("Renamed", "10/minute")


REDIS_CACHE = "redis://127.0.0.1:6379/14"


@pytest.mark.django_db(transaction=True)
def test_the_limit_holds_across_two_server_processes_on_redis(postgres, gunicorn):
    """Two gunicorn processes sharing Redis: 10 ingests spread over both, at 4 an hour, are 4
    accepted and 6 refused — not 4 per process."""
    if not _redis_ready(REDIS_CACHE):
        service_missing(f"Redis is not reachable at {REDIS_CACHE}")
    account = AccountFactory(rate_limit="4/hour")
    database_url = "postgres://{USER}@{HOST}:{PORT}/{NAME}".format(**postgres)
    servers = [gunicorn(database_url=database_url, REDIS_URL=REDIS_CACHE) for _ in range(2)]
    statuses = [
        http_call(
            servers[n % 2].url,
            "POST",
            INGEST_URL,
            headers={"CL-X-TOKEN": account.app_secret_token, "Content-Type": "application/json"},
            body=b"{}",
        ).status
        for n in range(10)
    ]
    assert sorted(statuses) == [200] * 4 + [429] * 6
    assert Event.objects.filter(account=account).count() == 4


def test_a_check_on_redis_is_one_round_trip(monkeypatch):
    """An ingest under its limit costs one command sent to Redis (an increment that sets its own
    expiry), not a SET NX and then an increment. A refusal reads its window too (the count and when it
    ends)."""
    if not _redis_ready(REDIS_CACHE):
        service_missing(f"Redis is not reachable at {REDIS_CACHE}")
    sent = []
    send = redis.connection.AbstractConnection.send_packed_command

    def counted(connection, command, check_health=True):
        sent.append(command)
        return send(connection, command, check_health)

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counted)
    key = str(uuid.uuid4())  # no counter of another run
    with override_settings(DATAPUSHER_RATE_LIMIT_STORAGE=REDIS_CACHE):
        assert limit_wait(group="ingest", key=key, rate="2/hour", count=True) is None  # loads the script
        sent.clear()
        assert limit_wait(group="ingest", key=key, rate="2/hour", count=True) is None
        assert len(sent) == 1
        sent.clear()
        assert 3590 <= limit_wait(group="ingest", key=key, rate="2/hour", count=True) <= 3600
        assert len(sent) == 3


FIRST_CHECKS = """
import json, os, threading
import django
django.setup()
from datapusher.ratelimit import limit_wait
start, waits = threading.Barrier(16), []
def first_check():
    start.wait()
    waits.append(limit_wait(group="ingest", key=os.environ["KEY"], rate="16/hour", count=True))
threads = [threading.Thread(target=first_check) for _ in range(16)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(json.dumps([waits, limit_wait(group="ingest", key=os.environ["KEY"], rate="16/hour", count=True)]))
"""


@pytest.mark.parametrize("redis_url", [REDIS_CACHE, ""], ids=["redis", "memory"])
def test_a_new_process_first_checks_from_many_threads_at_once_all_count(redis_url):
    """A fresh process whose first 16 checks come from 16 threads at once: each is counted, none
    fails open, and the 17th is refused. (Threads building the storage at once used to fail while
    one of them imported the Redis client, and each count in a limiter of its own, then lost.)"""
    if redis_url and not _redis_ready(redis_url):
        service_missing(f"Redis is not reachable at {redis_url}")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "datapusher.settings",
        "SECRET_KEY": "x",
        "REDIS_URL": redis_url,
        "KEY": str(uuid.uuid4()),
    }
    run = subprocess.run(  # noqa: S603 (our own command line)
        [sys.executable, "-c", FIRST_CHECKS],
        env=env,
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    waits, seventeenth = json.loads(run.stdout)
    assert waits == [None] * 16
    assert 3590 <= seventeenth <= 3600
    assert "not checked" not in run.stderr


@pytest.fixture
def silent_redis():
    """A port that accepts connections and never answers, as a hung Redis does."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
    listener.close()


@pytest.mark.timeout(20)
def test_a_silent_redis_bounds_the_ingest_and_limits_nothing(client, silent_redis, caplog):
    """With Redis accepting connections and saying nothing, the check gives up after its
    socket timeout, is logged, and the ingest goes on (200), rather than hanging or refusing."""
    account = AccountFactory()
    with override_settings(DATAPUSHER_RATE_LIMIT_STORAGE=silent_redis, DATAPUSHER_INGEST_RATE_LIMIT="1/hour"):
        started = time.monotonic()
        statuses = [ingest(client, account).status_code for _ in range(2)]
        elapsed = time.monotonic() - started
    assert statuses == [200, 200]
    assert "rate limit ingest not checked: the storage failed" in caplog.text
    # Each check gives up after one STORAGE_TIMEOUT_SECONDS (1 s): bounded, not hung.
    assert 2 * STORAGE_TIMEOUT_SECONDS <= elapsed < 2 * STORAGE_TIMEOUT_SECONDS + 3
