"""The outbound HTTP module against real local sockets: the faults a mock would hide."""

import ipaddress
import socket
import threading
import time

import pytest

from destinations import addresses
from server import http


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
    listener = socket.create_server(("127.0.0.1", 0))
    sent = {"bytes": 0}

    def endless():
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000000000\r\n\r\n")
        chunk = b"x" * 65536
        try:
            while sent["bytes"] < 10**9:
                conn.sendall(chunk)
                sent["bytes"] += len(chunk)
        except OSError:
            pass
        conn.close()

    thread = threading.Thread(target=endless, daemon=True)
    thread.start()
    response = http.send(
        method="POST", url=f"http://127.0.0.1:{listener.getsockname()[1]}/", headers={}, body=b"{}"
    )
    thread.join(timeout=5)
    listener.close()
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
