"""The outbound HTTP module against real local sockets: the faults a mock would hide."""

import contextlib
import ipaddress
import multiprocessing
import socket
import threading
import time
from collections.abc import Callable

import pytest

from destinations import addresses
from server import http


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _serve_one_connection(script: Callable[[socket.socket], None]) -> tuple[str, threading.Thread]:
    """A loopback TCP server, in a thread, answering its one connection's request with
    `script(conn)` until the client cuts it off: for destinations that misbehave. Returns its URL
    and the thread, which ends with the connection."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve():
        with listener:
            conn, _ = listener.accept()
        with conn, contextlib.suppress(OSError):  # the client cuts us off
            conn.recv(65536)
            script(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return f"http://127.0.0.1:{listener.getsockname()[1]}/", thread


class _DrippingBody:
    """An answer for _serve_one_connection: a status and headers at once, then a byte of its body
    every 0.1 s (never tripping a read timeout) until `stop` is set, which closes it unfinished."""

    def __init__(self) -> None:
        self.reached = threading.Event()  # the request has arrived
        self.stop = threading.Event()

    def __call__(self, conn: socket.socket) -> None:
        self.reached.set()
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n")
        while not self.stop.wait(0.1):
            conn.sendall(b"x")


def test_connection_refused_is_a_connection_error():
    """Nothing listening: OutboundConnectionError naming the refusal."""
    with pytest.raises(http.OutboundConnectionError) as excinfo:
        http.send(method="POST", url=f"http://127.0.0.1:{_unused_port()}/", headers={}, body=b"{}")
    assert (
        str(excinfo.value)
        == "connection failed: Failed to establish a new connection: [Errno 111] Connection refused"
    )


def test_unresolvable_host_is_a_connection_error():
    """A name that does not resolve is a connection error, reported as such."""
    with pytest.raises(http.OutboundConnectionError) as excinfo:
        http.send(method="GET", url="http://no-such-host.invalid/", headers={})
    assert str(excinfo.value).startswith(
        "connection failed: Failed to resolve 'no-such-host.invalid' ([Errno"
    )


def test_slow_response_is_cut_at_the_read_timeout(receiver, settings):
    """A destination slower than the read timeout raises OutboundTimeout in about that time."""
    settings.DATAPUSHER_READ_TIMEOUT = 0.3
    receiver.respond = lambda handler: time.sleep(1.5)
    started = time.monotonic()
    with pytest.raises(http.OutboundTimeout) as excinfo:
        http.send(method="POST", url=receiver.url, headers={}, body=b"{}")
    assert str(excinfo.value) == "read timed out after 0.3s"
    assert time.monotonic() - started < 1.2


def test_redirect_is_returned_not_followed(receiver):
    """A 3xx is the answer: the Location is never requested."""

    def redirect(handler):
        handler.send_response(307)
        handler.send_header("Location", "/elsewhere")
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    receiver.respond = redirect
    assert http.send(method="POST", url=f"{receiver.url}/in", headers={}, body=b"{}").status_code == 307
    assert [r.path for r in receiver.requests] == ["/in"]


def test_huge_response_body_is_not_read():
    """A destination streaming an endless body gets its status read and the connection closed."""
    sent = {"bytes": 0}

    def endless(conn):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000000000\r\n\r\n")
        chunk = b"x" * 65536
        while sent["bytes"] < 10**9:
            conn.sendall(chunk)
            sent["bytes"] += len(chunk)

    url, thread = _serve_one_connection(endless)
    response = http.send(method="POST", url=url, headers={}, body=b"{}")
    thread.join(timeout=5)
    assert response.status_code == 200
    assert not thread.is_alive()
    assert sent["bytes"] < 50_000_000


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("93.184.215.14", True),
        ("2606:2800:21f:cb07:6820:80da:af6b:8b2c", True),
        ("127.0.0.1", False),
        ("127.255.0.9", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("239.255.255.250", False),
        ("240.0.0.1", False),
        ("255.255.255.255", False),
        ("::1", False),
        ("::", False),
        ("fc00::1", False),
        ("fd12:3456::1", False),
        ("fe80::1", False),
        ("ff02::1", False),
        ("::ffff:127.0.0.1", False),
        ("::ffff:169.254.169.254", False),
        ("::ffff:93.184.215.14", True),
    ],
)
def test_address_policy(settings, address, allowed):
    """Only public unicast addresses pass by default, IPv4-mapped IPv6 judged as its IPv4."""
    settings.DATAPUSHER_ALLOWED_NETWORKS = []
    assert addresses.address_allowed(ipaddress.ip_address(address)) is allowed


def test_allowed_networks_open_only_the_listed_ranges(settings):
    """DATAPUSHER_ALLOWED_NETWORKS opens exactly its CIDRs."""
    settings.DATAPUSHER_ALLOWED_NETWORKS = ["10.20.0.0/16", "::1/128"]
    assert addresses.address_allowed(ipaddress.ip_address("10.20.3.4"))
    assert addresses.address_allowed(ipaddress.ip_address("::1"))
    assert not addresses.address_allowed(ipaddress.ip_address("10.21.0.1"))
    assert not addresses.address_allowed(ipaddress.ip_address("127.0.0.1"))


def test_guard_refuses_before_connecting(settings, receiver):
    """With loopback not allowed, send() raises AddressNotAllowed and the receiver sees nothing."""
    settings.DATAPUSHER_ALLOWED_NETWORKS = []
    with pytest.raises(http.AddressNotAllowed) as excinfo:
        http.send(method="POST", url=receiver.url, headers={}, body=b"{}")
    assert str(excinfo.value) == "destination address not allowed: 127.0.0.1"
    assert excinfo.value.retryable is False
    assert receiver.requests == []


def test_query_parameters_reach_the_wire_encoded_as_requests_encodes_them(receiver):
    """After the URL's own query: JSON text, non-ASCII keys and values, reserved characters."""
    params = [("a", "1"), ("b", '{"x":1}'), ("clé", "café ☕"), ("sp ace", "a&b=c+d/é")]
    http.send(method="GET", url=f"{receiver.url}/in?token=t%2F1", headers={}, params=params)
    assert [r.path for r in receiver.requests] == [
        "/in?token=t%2F1&a=1&b=%7B%22x%22%3A1%7D&cl%C3%A9=caf%C3%A9+%E2%98%95&sp+ace=a%26b%3Dc%2Bd%2F%C3%A9"
    ]


def test_a_query_over_the_limit_is_refused_before_anything_is_sent(receiver, settings, monkeypatch):
    """One byte over DATAPUSHER_MAX_QUERY_BYTES, the URL's own query counted: QueryTooLong, never
    retried, with no lookup, connection or request."""
    settings.DATAPUSHER_MAX_QUERY_BYTES = 105
    looked_up = []
    monkeypatch.setattr(http, "_resolve", lambda host, port: looked_up.append(host))
    outcome, _, _ = http.timed_send(
        method="GET", url=f"{receiver.url}/in?k=v", headers={}, params=[("a", "x" * 100)]
    )
    assert isinstance(outcome, http.QueryTooLong)
    assert str(outcome) == "query string of 106 bytes exceeds DATAPUSHER_MAX_QUERY_BYTES (105); not sent"
    assert outcome.retryable is False
    assert looked_up == []
    assert receiver.requests == []


def test_a_query_of_exactly_the_limit_is_sent(receiver, settings):
    """A query string of exactly DATAPUSHER_MAX_QUERY_BYTES, the URL's own query counted, is sent."""
    settings.DATAPUSHER_MAX_QUERY_BYTES = 106
    response = http.send(method="GET", url=f"{receiver.url}/in?k=v", headers={}, params=[("a", "x" * 100)])
    assert response.status_code == 200
    assert [r.path for r in receiver.requests] == [f"/in?k=v&a={'x' * 100}"]


def test_requests_start_no_thread_of_their_own(receiver, monkeypatch):
    """20 requests in a row start at most one thread between them: the process's deadline thread."""
    caller = threading.current_thread()
    started = []
    real_start = threading.Thread.start

    def start(thread):
        if threading.current_thread() is caller:
            started.append(thread.name)
        real_start(thread)

    monkeypatch.setattr(threading.Thread, "start", start)
    for _ in range(20):
        assert http.send(method="POST", url=receiver.url, headers={}, body=b"{}").status_code == 200
    assert started in ([], ["datapusher-deadlines"])


def test_concurrent_requests_are_each_cut_at_their_own_deadline(receiver, settings, monkeypatch):
    """Endless answers with deadlines of 3 s and then 1 s, and a prompt answer, all in flight at once:
    the prompt one succeeds, the 1 s one is cut, then the 3 s one, each naming its own deadline."""
    settings.DATAPUSHER_CONNECT_TIMEOUT = settings.DATAPUSHER_READ_TIMEOUT = 0.5  # drips never trip it
    deadlines = {"long": 3.0, "short": 1.0, "prompt": 3.0}
    monkeypatch.setattr(http, "deadline_seconds", lambda: deadlines[threading.current_thread().name])
    urls = {
        "long": _serve_one_connection(_DrippingBody())[0],
        "short": _serve_one_connection(_DrippingBody())[0],
        "prompt": receiver.url,
    }
    outcomes, ended = {}, []

    def send(name):
        outcomes[name] = http.timed_send(method="GET", url=urls[name], headers={})[0]
        ended.append(name)

    threads = [threading.Thread(target=send, args=(name,), name=name) for name in deadlines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert ended == ["prompt", "short", "long"]
    assert outcomes["prompt"].status_code == 200
    assert isinstance(outcomes["short"], http.OutboundTimeout)
    assert str(outcomes["short"]) == "no complete response within 1s"
    assert isinstance(outcomes["long"], http.OutboundTimeout)
    assert str(outcomes["long"]) == "no complete response within 3s"


def test_a_shorter_deadline_begun_later_is_not_held_to_the_longer_one(settings, monkeypatch):
    """A request with a 1 s deadline, begun while one with 60 s is in flight, is cut at its own
    while the other goes on."""
    settings.DATAPUSHER_CONNECT_TIMEOUT = settings.DATAPUSHER_READ_TIMEOUT = 0.5
    deadlines = {"long": 60.0, "short": 1.0}
    monkeypatch.setattr(http, "deadline_seconds", lambda: deadlines[threading.current_thread().name])
    long_answer = _DrippingBody()
    urls = {"long": _serve_one_connection(long_answer)[0], "short": _serve_one_connection(_DrippingBody())[0]}
    outcomes = {}

    def send(name):
        outcomes[name] = http.timed_send(method="GET", url=urls[name], headers={})[0]

    long = threading.Thread(target=send, args=("long",), name="long")
    short = threading.Thread(target=send, args=("short",), name="short")
    long.start()
    assert long_answer.reached.wait(10)
    short.start()
    short.join(timeout=10)
    assert str(outcomes.get("short")) == "no complete response within 1s"
    assert long.is_alive()
    long_answer.stop.set()
    long.join(timeout=10)


def _send_expecting_the_deadline(url: str) -> None:
    outcome = http.timed_send(method="GET", url=url, headers={})[0]
    assert str(outcome) == "no complete response within 1s"


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_cuts_requests_at_the_deadline_with_a_thread_of_its_own(receiver, settings):
    """Forked after this process's deadline thread started (as gunicorn forks its workers), a
    child's request to an endless answer is still cut at the deadline."""
    settings.DATAPUSHER_CONNECT_TIMEOUT = settings.DATAPUSHER_READ_TIMEOUT = 0.5
    assert http.send(method="GET", url=receiver.url, headers={}).status_code == 200
    url, _ = _serve_one_connection(_DrippingBody())
    child = multiprocessing.get_context("fork").Process(target=_send_expecting_the_deadline, args=(url,))
    child.start()
    child.join(timeout=10)
    child.kill()  # still running only if its request was never cut
    child.join()
    assert child.exitcode == 0


def test_a_destinations_cookies_are_never_sent_back(receiver):
    """A Set-Cookie in one answer is not kept: the next request to the same destination carries
    no Cookie header (and only our User-Agent, unless the destination's headers name another)."""

    def set_cookie(handler):
        handler.send_response(200)
        handler.send_header("Set-Cookie", "session=abc; Path=/")
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    receiver.respond = set_cookie
    for headers in ({}, {"user-agent": "Custom/1"}):
        assert http.send(method="POST", url=receiver.url, headers=headers, body=b"{}").status_code == 200
    received = [{name.lower(): value for name, value in r.headers.items()} for r in receiver.requests]
    assert ["cookie" in headers for headers in received] == [False, False]
    assert [headers["user-agent"] for headers in received] == [http.USER_AGENT, "Custom/1"]


def test_credentials_in_the_url_are_sent_as_basic_auth(receiver):
    """A destination URL with user:password@ gets them as an Authorization: Basic header, and the
    request line carries no credentials."""
    url = receiver.url.replace("http://", "http://hook%20user:p%40ss@")
    assert http.send(method="POST", url=f"{url}/in", headers={}, body=b"{}").status_code == 200
    [request] = receiver.requests
    assert (request.path, request.headers["Authorization"]) == ("/in", "Basic aG9vayB1c2VyOnBAc3M=")


def test_proxies_and_netrc_from_the_environment_are_ignored(receiver, monkeypatch, tmp_path):
    """HTTP_PROXY pointing nowhere and a .netrc with credentials for the destination's host change
    nothing: the request goes straight to the destination, with no Authorization header."""
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password secret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    monkeypatch.setenv("NETRC", str(netrc))
    assert http.send(method="POST", url=receiver.url, headers={}, body=b"{}").status_code == 200
    [request] = receiver.requests
    assert "Authorization" not in request.headers
