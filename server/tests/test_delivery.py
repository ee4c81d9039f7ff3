"""Delivery against real local HTTP servers: the fault matrix, the overall deadline, concurrency."""

import socket
import threading
import time
from collections.abc import Callable

import pytest
import urllib3

from accounts.tests.factories import AccountFactory
from destinations.tests.factories import DestinationFactory
from server.models import Attempt, Delivery, Event
from server.services.delivery import delivery_attempt_due
from server.tests.helpers import answer, ingest

pytestmark = pytest.mark.django_db


@pytest.fixture
def account():
    return AccountFactory()


def only_entry(response) -> dict:
    assert response.status_code == 200
    [entry] = response.json()["deliveries"]
    return entry


class RawServer:
    """A TCP server that answers each connection with `script(conn)`, for misbehaving peers."""

    def __init__(self, script: Callable[[socket.socket], None]):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/"
        self.script = script
        self.finished = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        conn, _ = self.listener.accept()
        conn.recv(65536)
        try:
            self.script(conn)
        except OSError:
            pass  # the client cut us off
        finally:
            conn.close()
            self.finished.set()

    def close(self):
        self.listener.close()


@pytest.fixture
def raw_server():
    servers = []

    def start(script):
        server = RawServer(script)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def test_success_is_logged_as_event_delivery_and_attempt(client, account, receiver):
    """A 2xx: the event, the delivery and its one attempt are stored with what happened."""
    receiver.respond = answer(201, b"thanks")
    destination = DestinationFactory(account=account, url=f"{receiver.url}/in")
    body = b'{"order": 7}'
    entry = only_entry(ingest(client, account, body))
    event = Event.objects.get()
    delivery = Delivery.objects.get()
    attempt = Attempt.objects.get()
    assert (event.account_id, event.body, event.external_id) == (account.account_id, '{"order": 7}', None)
    assert event.processed_at >= event.received_at
    assert (delivery.event_id, delivery.destination_id, delivery.url, delivery.http_method) == (
        event.event_id,
        destination.id,
        destination.url,
        "POST",
    )
    assert (delivery.status, delivery.attempt_count, delivery.last_status_code, delivery.error) == (
        "succeeded",
        1,
        201,
        "",
    )
    assert (attempt.delivery_id, attempt.status_code, attempt.response_body, attempt.error) == (
        delivery.id,
        201,
        "thanks",
        "",
    )
    assert attempt.started_at <= attempt.finished_at
    assert attempt.destination_id == destination.id
    assert entry == {
        "delivery_id": str(delivery.delivery_id),
        "destination_id": destination.id,
        "url": destination.url,
        "http_method": "POST",
        "status": "succeeded",
        "status_code": 201,
        "error": None,
        "duration_ms": attempt.duration_ms,
    }


@pytest.mark.parametrize("status", [500, 503, 404, 400, 429])
def test_error_status_is_failed_with_body_excerpt(client, account, receiver, status):
    """4xx and 5xx are failed deliveries, with the start of the answer kept."""
    receiver.respond = answer(status, b'{"error": "nope"}')
    DestinationFactory(account=account, url=receiver.url)
    entry = only_entry(ingest(client, account))
    assert (entry["status"], entry["status_code"], entry["error"]) == (
        "failed",
        status,
        f"destination answered HTTP {status}",
    )
    assert Attempt.objects.get().response_body == '{"error": "nope"}'


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_redirect_is_failed_and_not_followed(client, account, receiver, status):
    """A 3xx is a failed delivery; the Location is never requested."""
    receiver.respond = answer(status, headers={"Location": f"{receiver.url}/elsewhere"})
    DestinationFactory(account=account, url=f"{receiver.url}/in")
    entry = only_entry(ingest(client, account))
    assert (entry["status"], entry["status_code"]) == ("failed", status)
    assert [r.path for r in receiver.requests] == ["/in"]


def test_read_timeout_is_failed(client, account, receiver, settings):
    """A destination that answers later than the read timeout is failed in about that time."""
    settings.DATAPUSHER_READ_TIMEOUT = 0.3
    receiver.respond = lambda handler: time.sleep(2)
    DestinationFactory(account=account, url=receiver.url)
    started = time.monotonic()
    entry = only_entry(ingest(client, account))
    assert time.monotonic() - started < 1.5
    assert (entry["status"], entry["status_code"], entry["error"]) == (
        "failed",
        None,
        "read timed out after 0.3s",
    )


def test_connection_refused_is_failed(client, account):
    """Nothing listening is a failed delivery naming the refusal."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    DestinationFactory(account=account, url=f"http://127.0.0.1:{port}/")
    entry = only_entry(ingest(client, account))
    assert (
        entry["error"]
        == "connection failed: Failed to establish a new connection: [Errno 111] Connection refused"
    )


def test_dns_failure_is_failed(client, account):
    """A host that does not resolve is a failed delivery naming the lookup."""
    DestinationFactory(account=account, url="http://no-such-host.invalid/")
    entry = only_entry(ingest(client, account))
    assert entry["error"].startswith("connection failed: Failed to resolve 'no-such-host.invalid'")


def drip(prefix: bytes, rest: bytes, every: float) -> Callable[[socket.socket], None]:
    def script(conn):
        conn.sendall(prefix)
        for byte in rest:
            time.sleep(every)
            conn.sendall(bytes([byte]))

    return script


@pytest.mark.parametrize(
    "script",
    [
        drip(b"", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", every=0.1),
        drip(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", b"x" * 100, every=0.1),
        drip(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", b"x" * 100, every=0.1),
    ],
    ids=["dripping-headers", "dripping-body", "dripping-close-delimited-body"],
)
def test_dripping_destination_is_cut_at_the_overall_deadline(client, account, raw_server, settings, script):
    """Bytes every 0.1 s never trip the 0.5 s read timeout, but the 1 s deadline ends the attempt."""
    settings.DATAPUSHER_CONNECT_TIMEOUT = 0.5
    settings.DATAPUSHER_READ_TIMEOUT = 0.5
    server = raw_server(script)
    DestinationFactory(account=account, url=server.url)
    started = time.monotonic()
    entry = only_entry(ingest(client, account))
    elapsed = time.monotonic() - started
    assert 0.9 < elapsed < 2.0
    assert (entry["status"], entry["error"]) == ("failed", "no complete response within 1s")
    assert server.finished.wait(2), "the dripping connection was not closed"


def test_huge_body_is_not_read_past_the_cap(client, account, raw_server, settings):
    """An endless answer: the status counts, 4 KiB are kept, the rest is never read."""
    settings.DATAPUSHER_RESPONSE_MAX_BYTES = 65_536
    sent = {"bytes": 0}

    def endless(conn):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000000000\r\n\r\n")
        while sent["bytes"] < 10**9:
            conn.sendall(b"y" * 65536)
            sent["bytes"] += 65536

    server = raw_server(endless)
    DestinationFactory(account=account, url=server.url)
    entry = only_entry(ingest(client, account))
    assert (entry["status"], entry["status_code"]) == ("succeeded", 200)
    assert Attempt.objects.get().response_body == "y" * 4096
    assert server.finished.wait(5)
    assert sent["bytes"] < 50_000_000


def test_ten_slow_destinations_are_delivered_concurrently(client, account, receiver):
    """10 destinations answering in 300 ms each: all in flight at the receiver at once."""
    receiver.respond = lambda handler: (time.sleep(0.3), answer(200)(handler))
    for i in range(10):
        DestinationFactory(account=account, url=f"{receiver.url}/{i}")
    response = ingest(client, account)
    assert [e["status"] for e in response.json()["deliveries"]] == ["succeeded"] * 10
    assert receiver.max_in_flight == 10


@pytest.mark.parametrize("path", ["ingest", "worker"])
def test_a_slow_dns_lookup_is_cut_at_the_deadline_and_nothing_is_sent_after(
    client, account, receiver, settings, monkeypatch, path
):
    """A name whose lookup takes 5 s, with a 1 s deadline, as the only destination (the path every
    worker task takes): the attempt ends at the deadline as a timeout, and when the lookup finally
    returns, nothing is sent — the delivery's outcome is already written."""
    settings.DATAPUSHER_CONNECT_TIMEOUT = settings.DATAPUSHER_READ_TIMEOUT = 0.5
    real_getaddrinfo = socket.getaddrinfo
    looked_up = threading.Event()

    def slow_getaddrinfo(host, port, *args, **kwargs):
        if host == "slow-dns.example":
            time.sleep(5)
            looked_up.set()
            host = "127.0.0.1"
        return real_getaddrinfo(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", slow_getaddrinfo)
    port = receiver.url.rsplit(":", 1)[1]
    DestinationFactory(account=account, url=f"http://slow-dns.example:{port}/")
    started = time.monotonic()
    if path == "ingest":
        ingest(client, account)
    else:
        settings.DATAPUSHER_DELIVERY_MODE = "queue"
        ingest(client, account)
        delivery_attempt_due(delivery_pk=Delivery.objects.get().pk)
    elapsed = time.monotonic() - started
    stored = Delivery.objects.get()
    assert (stored.status, stored.error, stored.lease_id) == (
        "failed",
        "no complete response within 1s",
        None,
    )
    assert elapsed < 4  # the deadline plus grace (2 s), not the lookup's 5 s
    assert looked_up.wait(8)
    time.sleep(0.3)
    assert receiver.requests == []


def test_a_connection_made_after_the_deadline_sends_nothing(client, account, receiver, settings, monkeypatch):
    """A lookup (0.8 s) and a connect (0.6 s) that each stay under their own limits but together end
    after the 1 s deadline: the caller has recorded a timeout, and the late connection is shut
    before a byte of the request is written."""
    settings.DATAPUSHER_CONNECT_TIMEOUT = settings.DATAPUSHER_READ_TIMEOUT = 0.5
    real_getaddrinfo, real_connect = socket.getaddrinfo, urllib3.util.connection.create_connection

    def slow_getaddrinfo(host, port, *args, **kwargs):
        if host == "slow-dns.example":
            time.sleep(0.8)
            host = "127.0.0.1"
        return real_getaddrinfo(host, port, *args, **kwargs)

    def slow_connect(*args, **kwargs):
        time.sleep(0.6)
        return real_connect(*args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", slow_getaddrinfo)
    monkeypatch.setattr(urllib3.util.connection, "create_connection", slow_connect)
    port = receiver.url.rsplit(":", 1)[1]
    DestinationFactory(account=account, url=f"http://slow-dns.example:{port}/")
    entry = only_entry(ingest(client, account))
    assert (entry["status"], entry["error"]) == ("failed", "no complete response within 1s")
    time.sleep(1)  # the late connection has been made, and shut, by now
    assert receiver.requests == []


def test_one_failing_destination_does_not_stop_the_others(client, account, receiver):
    """A refused destination among working ones: each gets its own outcome, in destination order."""
    receiver.respond = answer(200)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}/"
    urls = [f"{receiver.url}/a", dead, f"{receiver.url}/b"]
    for url in urls:
        DestinationFactory(account=account, url=url)
    entries = ingest(client, account).json()["deliveries"]
    assert [(e["url"], e["status"]) for e in entries] == [
        (urls[0], "succeeded"),
        (dead, "failed"),
        (urls[2], "succeeded"),
    ]


# --- SSRF guard -------------------------------------------------------------------------------------


def test_hostname_resolving_to_loopback_is_refused_at_connect_time(client, account, receiver, settings):
    """`localhost` passes creation while loopback is allowed; once it is not, nothing is sent."""
    destination = DestinationFactory(account=account, url=receiver.url.replace("127.0.0.1", "localhost"))
    settings.DATAPUSHER_ALLOWED_NETWORKS = []
    entry = only_entry(ingest(client, account))
    assert (entry["destination_id"], entry["status"], entry["status_code"]) == (
        destination.id,
        "failed",
        None,
    )
    assert entry["error"].startswith("destination address not allowed: ")
    assert "127.0.0.1" in entry["error"]
    assert receiver.requests == []


@pytest.mark.parametrize(
    "resolved",
    [
        ["10.1.2.3"],
        ["169.254.169.254"],
        ["100.64.0.1"],
        ["fd00::1"],
        ["::ffff:127.0.0.1"],
        ["::ffff:10.0.0.1"],
        ["0.0.0.0"],
    ],
)
def test_hostname_resolving_to_private_addresses_is_refused(client, account, monkeypatch, settings, resolved):
    """A public-looking name that DNS points at an internal address is refused before connecting."""
    settings.DATAPUSHER_ALLOWED_NETWORKS = []
    real_getaddrinfo = socket.getaddrinfo

    def fake_getaddrinfo(host, port, *args, **kwargs):
        if host == "hooks.internal.example.com":
            family = socket.AF_INET6 if ":" in resolved[0] else socket.AF_INET
            return [(family, socket.SOCK_STREAM, 6, "", (address, port)) for address in resolved]
        return real_getaddrinfo(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
    DestinationFactory(account=account, url="http://hooks.internal.example.com/in")
    entry = only_entry(ingest(client, account))
    assert entry["error"] == f"destination address not allowed: {resolved[0]}"


def test_allowed_networks_open_a_chosen_network(client, account, receiver, settings):
    """Listing 127.0.0.1/32 in DATAPUSHER_ALLOWED_NETWORKS lets a loopback destination through."""
    settings.DATAPUSHER_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    DestinationFactory(account=account, url=receiver.url)
    assert only_entry(ingest(client, account))["status"] == "succeeded"
