"""Ingest bodies sent with `Transfer-Encoding: chunked` (no Content-Length), over real servers."""

import http.client
import json
import socket
from urllib.parse import urlsplit

import pytest

from accounts.tests.factories import AccountFactory
from server.tests.helpers import INGEST_URL, HttpAnswer, http_call

LIMIT = 1024  # DATA_UPLOAD_MAX_MEMORY_SIZE of the gunicorn under test
TOO_LARGE = {"success": False, "message": "Payload Too Large"}


@pytest.fixture
def site(sqlite_site):
    return sqlite_site(DATA_UPLOAD_MAX_MEMORY_SIZE=str(LIMIT))


def api_create(site, path: str, payload: dict) -> dict:
    """POST to the site's management API with its staff token; returns the created object."""
    answer = http_call(
        site.url,
        "POST",
        path,
        headers={"Authorization": f"Token {site.api_token}", "Content-Type": "application/json"},
        body=json.dumps(payload).encode(),
    )
    assert answer.status == 201, answer.json
    return answer.json


def create_account(site) -> dict:
    return api_create(site, "/api/accounts/", {"email": "ops@example.com", "account_name": "Ops"})


def post_chunked(base_url: str, chunks: list[bytes], token: str) -> HttpAnswer:
    """POST the chunks to the ingest with `Transfer-Encoding: chunked` and no Content-Length."""
    headers = {"Content-Type": "application/json", "CL-X-TOKEN": token}
    return http_call(base_url, "POST", INGEST_URL, headers=headers, body=iter(chunks))


def padded_json(size: int) -> bytes:
    """A JSON object of exactly `size` bytes."""
    body = b'{"pad": "' + b"x" * (size - len(b'{"pad": ""}')) + b'"}'
    assert len(body) == size
    return body


def test_chunked_body_is_accepted_and_delivered_byte_exact(site, receiver):
    """gunicorn de-chunks the body; the ingest reads it to the end and delivers it unchanged."""
    account = create_account(site)
    destination = api_create(
        site,
        "/api/destinations/",
        {
            "account": account["account_id"],
            "url": f"{receiver.url}/hook",
            "http_method": "POST",
            "headers": {},
        },
    )
    chunks = [b'{"name": "Ad', "\u00e1".encode(), b'",  "n": 1.50,', b' "list": [1, 2]}']

    answer = post_chunked(site.url, chunks, account["app_secret_token"])

    assert answer.status == 200, answer.json
    assert (answer.json["success"], answer.json["message"], answer.json["duplicate"]) == (
        True,
        "Data Received",
        False,
    )
    assert [(d["destination_id"], d["status"], d["status_code"]) for d in answer.json["deliveries"]] == [
        (destination["id"], "succeeded", 200)
    ]
    assert [(r.method, r.path, r.body) for r in receiver.requests] == [("POST", "/hook", b"".join(chunks))]


def test_chunked_body_of_exactly_the_limit_is_accepted(site):
    """A chunked body of DATA_UPLOAD_MAX_MEMORY_SIZE bytes is within the limit."""
    account = create_account(site)
    body = padded_json(LIMIT)

    answer = post_chunked(site.url, [body[:100], body[100:]], account["app_secret_token"])

    assert answer.status == 200
    assert answer.json == {
        "success": True,
        "message": "Data Received",
        "event_id": answer.json["event_id"],
        "duplicate": False,
        "deliveries": [],
    }


def test_chunked_body_over_the_limit_is_413(site):
    """A chunked body one byte over DATA_UPLOAD_MAX_MEMORY_SIZE is the ingest's JSON 413."""
    account = create_account(site)
    body = padded_json(LIMIT + 1)

    answer = post_chunked(site.url, [body[:100], body[100:]], account["app_secret_token"])

    assert (answer.status, answer.json) == (413, TOO_LARGE)


def test_endless_chunked_body_is_refused_without_reading_to_its_end(site):
    """Past the limit the ingest stops reading and answers 413, though the body has not ended."""
    account = create_account(site)
    address = urlsplit(site.url)
    with socket.create_connection((address.hostname, address.port), timeout=30) as sock:
        sock.sendall(
            f"POST {INGEST_URL} HTTP/1.1\r\n"
            "Host: 127.0.0.1\r\n"
            "Content-Type: application/json\r\n"
            f"CL-X-TOKEN: {account['app_secret_token']}\r\n"
            "Transfer-Encoding: chunked\r\n\r\n".encode()
        )
        data = b'{"pad": "' + b"x" * LIMIT
        sock.sendall(b"%x\r\n%s\r\n" % (len(data), data))  # and never the last chunk
        response = http.client.HTTPResponse(sock)
        response.begin()
        assert (response.status, json.loads(response.read())) == (413, TOO_LARGE)


@pytest.mark.django_db(transaction=True)
def test_chunked_body_the_server_did_not_dechunk_is_411(live_server):
    """Django's own server (as runserver) passes chunked bodies on undecoded: 411, not a guess."""
    account = AccountFactory()

    answer = post_chunked(live_server.url, [b'{"a": ', b"1}"], account.app_secret_token)

    assert (answer.status, answer.json) == (411, {"success": False, "message": "Length Required"})
