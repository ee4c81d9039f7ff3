"""A database that refuses connections or never answers: 503 with Retry-After, never 500.

Real gunicorn processes on production settings, pointed at PostgreSQL addresses where no database
answers, so these need no database server at all.
"""

import socket
from collections.abc import Iterator

import pytest

from server.tests.helpers import INGEST_URL, closed_port, http_call

UNAVAILABLE_INGEST = {"success": False, "message": "Service Unavailable"}
UNAVAILABLE_API = {"detail": "Service Unavailable"}


def answered(server, method: str, path: str, headers: dict[str, str], body: bytes | None = None) -> tuple:
    """(status, Retry-After, JSON body) of one request to `server`."""
    answer = http_call(server.url, method, path, headers=headers, body=body)
    return answer.status, answer.headers["Retry-After"], answer.json


@pytest.fixture
def silent_database() -> Iterator[int]:
    """A port whose connections the kernel accepts (into the backlog) and nobody ever answers."""
    with socket.create_server(("127.0.0.1", 0), backlog=16) as listener:
        yield listener.getsockname()[1]


@pytest.fixture
def refusing_site(gunicorn):
    """The app served by gunicorn with DATABASE_URL on a port where connections are refused."""
    return gunicorn(database_url=f"postgres://postgres@127.0.0.1:{closed_port()}/x")


def test_ingest_is_503_when_the_database_refuses(refusing_site):
    """POST /server/incoming_data with a database that refuses: the ingest's JSON 503, Retry-After 5."""
    answer = answered(refusing_site, "POST", INGEST_URL, {"CL-X-TOKEN": "any"}, b"{}")
    assert answer == (503, "5", UNAVAILABLE_INGEST)


def test_api_is_503_when_the_database_refuses(refusing_site):
    """GET /api/accounts/ (DRF re-raises the error from token authentication): JSON 503, Retry-After 5."""
    answer = answered(refusing_site, "GET", "/api/accounts/", {"Authorization": "Token any"})
    assert answer == (503, "5", UNAVAILABLE_API)


def test_ingest_is_503_when_the_database_never_answers(gunicorn, silent_database):
    """A database that accepts the connection and says nothing is given up on after the connect
    timeout (DATABASE_CONNECT_TIMEOUT, 5 s by default): 503, well before the client's 30 s."""
    server = gunicorn(database_url=f"postgres://postgres@127.0.0.1:{silent_database}/x")
    answer = answered(server, "POST", INGEST_URL, {"CL-X-TOKEN": "any"}, b"{}")
    assert answer == (503, "5", UNAVAILABLE_INGEST)
