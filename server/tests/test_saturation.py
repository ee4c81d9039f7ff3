"""One account floods slow destinations; the others do not notice. Real gunicorn processes sized as
`make serve` sizes them, real receivers, real sockets; concurrency counted at the receiver.

Runs on PostgreSQL, shared by the server processes and the test (CI runs it).
"""

import threading
import time

import pytest
from knox.models import AuthToken

from accounts.tests.factories import AccountFactory
from destinations.tests.factories import DestinationFactory
from server.tests.conftest import wait_until
from server.tests.helpers import INGEST_URL, http_call

# `make serve` on this 2-core machine: WEB_CONCURRENCY = cores, WEB_THREADS = 32 (see the Makefile).
WEB_PROCESSES, WEB_THREADS = 2, 32
SHARE, POOL = 16, 64  # DATAPUSHER_ACCOUNT_CONCURRENCY and DATAPUSHER_DELIVERY_CONCURRENCY defaults
FLOODERS = 48


def timed(base_url: str, method: str, path: str, body: bytes | None = None, **headers: str):
    """(answer, seconds taken) of one request on a new connection."""
    started = time.monotonic()
    headers = {"Content-Type": "application/json", **headers}
    answer = http_call(base_url, method, path, headers=headers, body=body)
    return answer, time.monotonic() - started


@pytest.mark.django_db(transaction=True)
def test_a_flooding_account_starves_neither_another_account_nor_the_api(
    postgres, gunicorn, receiver, staff_user
):
    """48 upstream connections push account A's events to 3 destinations that hang for the whole
    deadline. Meanwhile account B's event to a fast destination is delivered at once, and
    GET /api/accounts/ answers in under a second; A never has more requests in flight than its share
    allows (16 sends per process, at most 48 requests each)."""
    release = threading.Event()
    slow_in_flight = [0, 0]  # now, most
    lock = threading.Lock()

    def respond(handler):
        if handler.path.startswith("/slow"):
            with lock:
                slow_in_flight[0] += 1
                slow_in_flight[1] = max(slow_in_flight)
            try:
                release.wait(6)
            finally:
                with lock:
                    slow_in_flight[0] -= 1
        handler.send_response(200)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    receiver.respond = respond
    flooding, other = AccountFactory(), AccountFactory()
    for i in range(3):
        DestinationFactory(account=flooding, url=f"{receiver.url}/slow/{i}")
    DestinationFactory(account=other, url=f"{receiver.url}/fast")
    _, api_token = AuthToken.objects.create(user=staff_user)
    database_url = "postgres://{USER}@{HOST}:{PORT}/{NAME}".format(**postgres)
    server = gunicorn(
        database_url=database_url,
        workers=WEB_PROCESSES,
        threads=WEB_THREADS,
        DATAPUSHER_CONNECT_TIMEOUT="1",
        DATAPUSHER_READ_TIMEOUT="4",
        DATAPUSHER_INGEST_RATE_LIMIT="off",  # the share of threads is what is under test here
    )
    stop = threading.Event()

    def flood():
        while not stop.is_set():
            try:
                timed(server.url, "POST", INGEST_URL, b"{}", **{"CL-X-TOKEN": flooding.app_secret_token})
            except (OSError, ValueError):  # a refused or cut connection: keep flooding
                continue

    flooders = [threading.Thread(target=flood, daemon=True) for _ in range(FLOODERS)]
    for thread in flooders:
        thread.start()
    try:
        wait_until(
            lambda: slow_in_flight[0] >= 2 * 3 * 8, 20, f"the flood did not build up: {slow_in_flight}"
        )
        answer, took = timed(
            server.url, "POST", INGEST_URL, b'{"b": 2}', **{"CL-X-TOKEN": other.app_secret_token}
        )
        assert (answer.status, [d["status"] for d in answer.json["deliveries"]]) == (200, ["succeeded"])
        assert took < 5  # within its deadline (connect 1 s + read 4 s)
        answer, took = timed(server.url, "GET", "/api/accounts/", Authorization=f"Token {api_token}")
        assert (answer.status, took < 1) == (200, True)
    finally:
        stop.set()
        release.set()
        for thread in flooders:
            thread.join(30)
    assert slow_in_flight[1] <= WEB_PROCESSES * SHARE * 3
    assert [r.path for r in receiver.requests].count("/fast") == 1
