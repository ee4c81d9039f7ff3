"""`make receiver`: the local echo server for trying deliveries prints what it gets and answers 200."""

import re
import socket
import sys
import time
from collections.abc import Callable

import pytest

from server.tests.conftest import Service, production_env
from server.tests.helpers import http_exchange


@pytest.fixture
def echo(services, tmp_path) -> Callable[..., tuple[Service, int]]:
    """start(*args) -> (the receiver process, its port), on a free port."""

    def start(*args: str) -> tuple[Service, int]:
        argv = [sys.executable, "-m", "server.receiver", "--port", "0", *args]
        env = production_env(database_url=f"sqlite:///{tmp_path / 'unused.sqlite3'}")
        service = services(argv, env, lambda log: "Receiving on" in log)
        return service, int(re.search(r"http://127\.0\.0\.1:(\d+)/", service.log.read_text())[1])

    return start


def request(port: int, method: str, path: str, body: bytes | None, headers: dict[str, str]):
    status, _, answer = http_exchange(f"http://127.0.0.1:{port}", method, path, headers=headers, body=body)
    return status, answer


def printed(service: Service, count: int) -> str:
    """The receiver's output once it has printed `count` requests (5 s at most)."""
    deadline = time.monotonic() + 5
    while service.log.read_text().count("\nquery: ") < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return service.log.read_text().split("\n", 1)[1]


def test_prints_method_path_query_headers_and_body_and_answers_200(echo):
    """A POST is printed (method, path, query, headers, body) and answered 200 `ok`."""
    service, port = echo()
    answer = request(port, "POST", "/orders?a=1&b=x%20y", b'{"id": 42}', {"X-App": "7"})
    assert answer == (200, b"ok")
    assert printed(service, 1) == (
        "POST /orders\n"
        "query: a=1&b=x%20y\n"
        f"Host: 127.0.0.1:{port}\n"
        "Accept-Encoding: identity\n"
        "Content-Length: 10\n"
        "X-App: 7\n"
        "\n"
        '{"id": 42}\n'
        "\n"
    )


def test_a_get_prints_an_empty_body(echo):
    """A GET (query, no body) is printed with an empty body and answered 200."""
    service, port = echo()
    assert request(port, "GET", "/lookup?user=42", None, {}) == (200, b"ok")
    assert printed(service, 1).startswith("GET /lookup\nquery: user=42\n")
    assert printed(service, 1).endswith("Accept-Encoding: identity\n\n\n\n")


def test_a_bad_content_length_is_400(echo):
    """A Content-Length that is not a number of bytes is answered 400, not read."""
    _, port = echo()
    status, _ = request(port, "POST", "/", None, {"Content-Length": "lots"})
    assert status == 400


def test_a_silent_client_is_dropped_after_the_timeout(echo):
    """A connection that sends nothing is closed after --timeout seconds."""
    _, port = echo("--timeout", "0.5")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
        assert client.recv(1) == b""
