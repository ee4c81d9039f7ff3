"""End to end over real sockets: the app served by a live server, pushing to a real receiver."""

import json
import urllib.error
import urllib.request
from urllib.parse import parse_qsl, urlsplit

import pytest

from accounts.tests.factories import AccountFactory
from datapusher import __version__
from destinations.tests.factories import DestinationFactory


def post_json(url: str, body: bytes, token: str) -> tuple[int, dict]:
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json", "CL-X-TOKEN": token}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest.mark.django_db(transaction=True)
def test_get_post_put_delivered_over_real_sockets(live_server, receiver):
    """One ingest reaches GET, POST and PUT destinations on a real HTTP server, exactly as configured."""
    account = AccountFactory()
    get = DestinationFactory(
        account=account, url=f"{receiver.url}/get?fixed=1", http_method="GET", headers={"X-Kind": "get"}
    )
    post = DestinationFactory(
        account=account, url=f"{receiver.url}/post", http_method="POST", headers={"X-Kind": "post"}
    )
    put = DestinationFactory(
        account=account, url=f"{receiver.url}/put", http_method="PUT", headers={"X-Kind": "put"}
    )
    body = b'{"user": {"id": 7, "tags": ["a", "b"]}, "name": "Ada", "active": true}'

    status, answer = post_json(f"{live_server.url}/server/incoming_data", body, account.app_secret_token)

    assert status == 200
    assert [(d["destination_id"], d["status"], d["status_code"]) for d in answer["deliveries"]] == [
        (get.id, "succeeded", 200),
        (post.id, "succeeded", 200),
        (put.id, "succeeded", 200),
    ]
    by_path = {urlsplit(r.path).path: r for r in receiver.requests}
    received_get = by_path["/get"]
    assert received_get.method == "GET"
    assert parse_qsl(urlsplit(received_get.path).query) == [
        ("fixed", "1"),
        ("user", '{"id":7,"tags":["a","b"]}'),
        ("name", "Ada"),
        ("active", "true"),
    ]
    assert received_get.body == b""
    assert received_get.headers["X-Kind"] == "get"
    for path, method in [("/post", "POST"), ("/put", "PUT")]:
        received = by_path[path]
        assert (received.method, received.body) == (method, body)
        assert received.headers["Content-Type"] == "application/json"
        assert received.headers["X-Kind"] == method.lower()
        assert received.headers["User-Agent"] == f"DataPusher/{__version__}"
        assert "CL-X-TOKEN" not in received.headers


@pytest.mark.django_db(transaction=True)
def test_unknown_token_over_real_socket_is_401(live_server):
    """The contract's 401 holds through a real server too."""
    status, answer = post_json(f"{live_server.url}/server/incoming_data", b"{}", "wrong")
    assert (status, answer) == (401, {"success": False, "message": "Un Authenticate"})
