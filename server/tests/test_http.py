"""The outbound HTTP module against real local sockets: the faults a mock would hide."""

import socket
import threading
import time

import pytest

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
