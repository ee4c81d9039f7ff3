import json
import re

import pytest
import requests
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.tests.factories import AccountFactory
from datapusher import __version__
from destinations.models import Destination
from destinations.tests.factories import DestinationFactory
from server.models import Delivery, Event
from server.services import ingest as ingest_service
from server.tests.helpers import INGEST_URL, ingest

pytestmark = pytest.mark.django_db

INVALID_DATA = {"success": False, "message": "Invalid Data"}
UNAUTHENTICATED = {"success": False, "message": "Un Authenticate"}
USER_AGENT = f"DataPusher/{__version__}"


@pytest.fixture
def account():
    return AccountFactory()


def delivery(destination, status="succeeded", status_code=200, error=None) -> dict:
    """The ingest's entry for `destination`, checked against the delivery log."""
    stored = Delivery.objects.get(destination=destination)
    assert (stored.status, stored.last_status_code, stored.error or None) == (status, status_code, error)
    return {
        "delivery_id": str(stored.delivery_id),
        "destination_id": destination.id,
        "url": destination.url,
        "http_method": destination.http_method,
        "status": status,
        "status_code": status_code,
        "error": error,
        "duration_ms": stored.duration_ms,
    }


def received(account, deliveries: list[dict]) -> dict:
    """The whole ingest answer for the account's one event."""
    return {
        "success": True,
        "message": "Data Received",
        "event_id": str(Event.objects.get(account=account).event_id),
        "duplicate": False,
        "deliveries": deliveries,
    }


def unsigned(headers) -> dict:
    """The headers without the Standard Webhooks trio (checked in test_signing)."""
    rest = {name: value for name, value in headers.items() if not name.startswith("webhook-")}
    assert len(headers) - len(rest) == 3
    return rest


# --- 1. Method ---------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["get", "put", "patch", "delete", "options"])
def test_non_post_methods_are_405_with_allow_header(client, account, method):
    """Any method but POST is 405 with Allow: POST and the Invalid Data body, even with a valid token."""
    response = getattr(client, method)(INGEST_URL, headers={"CL-X-TOKEN": account.app_secret_token})
    assert response.status_code == 405
    assert response.headers["Allow"] == "POST"
    assert response.json() == INVALID_DATA


def test_method_is_checked_before_token(client):
    """A GET without any token is still a 405, not a 401."""
    response = client.get(INGEST_URL)
    assert (response.status_code, response.json()) == (405, INVALID_DATA)


# --- 2. Token ----------------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [{}, {"CL-X-TOKEN": ""}, {"CL-X-TOKEN": "unknown-token"}])
def test_missing_empty_or_unknown_token_is_401(client, account, headers):
    """No token, an empty one and an unknown one all answer the same 401."""
    response = client.post(INGEST_URL, b'{"a": 1}', content_type="application/json", headers=headers)
    assert (response.status_code, response.json()) == (401, UNAUTHENTICATED)


def test_token_is_checked_before_body(client):
    """An unknown token with a broken body is a 401: no hint about the body to strangers."""
    response = client.post(
        INGEST_URL, b"{broken", content_type="application/json", headers={"CL-X-TOKEN": "nope"}
    )
    assert (response.status_code, response.json()) == (401, UNAUTHENTICATED)


def test_old_token_stops_working_after_rotation(client, account, api_client):
    """After rotate-token the old token is a 401 and the new one is accepted."""
    old = account.app_secret_token
    new = api_client.post(f"/api/accounts/{account.account_id}/rotate-token/").json()["app_secret_token"]
    old_response = client.post(
        INGEST_URL, b"{}", content_type="application/json", headers={"CL-X-TOKEN": old}
    )
    new_response = client.post(
        INGEST_URL, b"{}", content_type="application/json", headers={"CL-X-TOKEN": new}
    )
    assert (old_response.status_code, new_response.status_code) == (401, 200)


def test_ingest_needs_no_user_session_or_csrf(account):
    """The token alone authenticates: CSRF checks do not apply."""
    from django.test import Client

    response = Client(enforce_csrf_checks=True).post(
        INGEST_URL, b"{}", content_type="application/json", headers={"CL-X-TOKEN": account.app_secret_token}
    )
    assert response.status_code == 200


# --- 3. Body -----------------------------------------------------------------------------------


JSON = "application/json"
NOT_JSON = "The body is not valid JSON: "
NOT_AN_OBJECT = "The body must be a JSON object, not "
NOT_JSON_TYPE = "Content-Type must be application/json, not "
NOT_UTF8 = "The body is not UTF-8: "
FORM = "application/x-www-form-urlencoded"
BOM = "\ufeff".encode()
AT_1_1, AT_1_2 = "line 1 column 1 (char 0).", "line 1 column 2 (char 1)."


@pytest.mark.parametrize(
    ("body", "content_type", "error"),
    [
        (b"", JSON, "The body is empty: send a JSON object."),
        (b"{not json", JSON, NOT_JSON + "Expecting property name enclosed in double quotes: " + AT_1_2),
        (b"[1, 2]", JSON, NOT_AN_OBJECT + "an array."),
        (b'"text"', JSON, NOT_AN_OBJECT + "a string."),
        (b"42", JSON, NOT_AN_OBJECT + "a number."),
        (b"null", JSON, NOT_AN_OBJECT + "null."),
        (b"true", JSON, NOT_AN_OBJECT + "a boolean."),
        (b"a=1&b=2", FORM, NOT_JSON_TYPE + FORM + "."),
        (b'{"a": 1}', FORM, NOT_JSON_TYPE + FORM + "."),
        (b'{"a": 1}', "multipart/form-data; boundary=x", NOT_JSON_TYPE + "multipart/form-data."),
        (b'{"a": 1}', "text/plain", NOT_JSON_TYPE + "text/plain."),
        ('{"a": "é"}'.encode("utf-16"), JSON, NOT_UTF8 + "invalid start byte at byte 0."),
        ('{"a": "é"}'.encode("latin-1"), JSON, NOT_UTF8 + "invalid continuation byte at byte 7."),
        (b'{"a": "x"}', JSON + "; charset=latin-1", "The body must be UTF-8, not charset=latin-1."),
        (BOM + b'{"a": 1}', JSON, NOT_JSON + "Unexpected UTF-8 BOM (decode using utf-8-sig): " + AT_1_1),
        (b'{"a": NaN}', JSON, NOT_JSON + "NaN is not a JSON value."),
        (b'{"a": Infinity}', JSON, NOT_JSON + "Infinity is not a JSON value."),
        (b'{"a": 1e999}', JSON, NOT_JSON + "the number 1e999 is out of range."),
        (b'{"a": "\\ud800"}', JSON, NOT_JSON + "it escapes a lone surrogate (not text)."),
        (b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", JSON, NOT_JSON + "it is nested too deeply."),
    ],
    ids=[
        "empty",
        "unparseable",
        "array",
        "string",
        "number",
        "null",
        "boolean",
        "form-encoded",
        "json-sent-as-form",
        "multipart",
        "text-plain",
        "utf-16",
        "latin-1-bytes",
        "latin-1-charset",
        "byte-order-mark",
        "nan",
        "infinity",
        "overflowing-number",
        "lone-surrogate",
        "nested-too-deep",
    ],
)
def test_body_that_is_not_a_json_object_is_400_saying_why(client, account, mocked, body, content_type, error):
    """Anything but a UTF-8 JSON object is 400 Invalid Data with an error saying why; nothing is sent."""
    DestinationFactory(account=account)
    response = ingest(client, account, body, content_type=content_type)
    assert (response.status_code, response.json()) == (400, {**INVALID_DATA, "error": error})
    assert len(mocked.calls) == 0
    assert Event.objects.count() == 0


def test_body_over_the_size_limit_is_413(client, account, settings):
    """A body larger than DATA_UPLOAD_MAX_MEMORY_SIZE is a JSON 413, not an HTML error."""
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    response = ingest(client, account, json.dumps({"a": "x" * 200}))
    assert response.status_code == 413
    assert response.json() == {"success": False, "message": "Payload Too Large"}


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/json; charset=utf-8", "application/cloudevents+json"]
)
def test_json_content_types_are_accepted(client, account, content_type):
    """application/json (with a UTF-8 charset or not) and +json types are JSON."""
    response = ingest(client, account, b'{"a": 1}', content_type=content_type)
    assert response.status_code == 200


def test_missing_content_type_is_accepted(client, account):
    """A JSON object without a Content-Type header is accepted."""
    response = client.generic(
        "POST", INGEST_URL, b'{"a": 1}', content_type="", headers={"CL-X-TOKEN": account.app_secret_token}
    )
    assert response.status_code == 200


# --- 4. Delivery -------------------------------------------------------------------------------


def test_account_without_destinations_gets_empty_deliveries(client, account):
    """No destinations: 200 with an empty list."""
    response = ingest(client, account, b'{"a": 1}')
    assert response.status_code == 200
    assert response.json() == received(account, [])


def test_trailing_slash_is_accepted(client, account):
    """/server/incoming_data/ behaves like /server/incoming_data."""
    response = client.post(
        f"{INGEST_URL}/",
        b"{}",
        content_type="application/json",
        headers={"CL-X-TOKEN": account.app_secret_token},
    )
    assert (response.status_code, response.json()["success"]) == (200, True)


def test_post_destination_gets_the_body_bytes_unchanged(client, account, mocked):
    """POST sends the received bytes as is (spacing, key order, unicode), with the headers as configured."""
    destination = DestinationFactory(
        account=account,
        url="https://hooks.example.com/in",
        http_method="POST",
        headers={"APP_ID": "1234APPID1234", "ACTION": "user.update", "Accept": "*"},
    )
    mocked.post("https://hooks.example.com/in", status=200)
    body = '{ "z": 1,  "a": {"nested": [1, 2.50, "é"]}, "n": null }'.encode()
    response = ingest(client, account, body)
    assert response.status_code == 200
    assert response.json() == received(account, [delivery(destination)])
    sent = mocked.calls[0].request
    assert (sent.method, sent.url, sent.body) == ("POST", "https://hooks.example.com/in", body)
    assert unsigned(sent.headers) == {
        "APP_ID": "1234APPID1234",
        "ACTION": "user.update",
        "Accept": "*",
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "Content-Length": str(len(body)),
    }


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_put_and_patch_destinations_get_the_body(client, account, mocked, method):
    """PUT and PATCH send the JSON body like POST."""
    DestinationFactory(account=account, url="https://hooks.example.com/r/1", http_method=method, headers={})
    mocked.add(method, "https://hooks.example.com/r/1", status=204)
    response = ingest(client, account, b'{"a":1}')
    assert response.json()["deliveries"][0]["status_code"] == 204
    sent = mocked.calls[0].request
    assert (sent.method, sent.body, sent.headers["Content-Type"]) == (method, b'{"a":1}', "application/json")


def test_configured_content_type_and_user_agent_are_kept(client, account, mocked):
    """A destination's own Content-Type and User-Agent (any case) win over the defaults."""
    DestinationFactory(
        account=account,
        url="https://hooks.example.com/in",
        headers={"content-type": "application/vnd.api+json", "user-agent": "Custom/1"},
    )
    mocked.post("https://hooks.example.com/in")
    ingest(client, account, b"{}")
    sent = mocked.calls[0].request
    assert sent.headers["Content-Type"] == "application/vnd.api+json"
    assert sent.headers["User-Agent"] == "Custom/1"
    assert [name.lower() for name in sent.headers].count("content-type") == 1


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_get_and_delete_destinations_get_query_parameters(client, account, mocked, method):
    """Top-level keys become query parameters: strings as is, other values as compact JSON; no body."""
    DestinationFactory(
        account=account, url="https://hooks.example.com/q", http_method=method, headers={"A": "b"}
    )
    mocked.add(method, "https://hooks.example.com/q", status=200)
    body = json.dumps(
        {
            "name": "Ada Lovelace & co",
            "count": 3,
            "ratio": 0.5,
            "ok": True,
            "off": False,
            "none": None,
            "obj": {"c": [1, 2]},
            "list": ["x", {"y": "é"}],
            "empty": "",
        }
    )
    response = ingest(client, account, body)
    assert response.json()["deliveries"][0]["status"] == "succeeded"
    sent = mocked.calls[0].request
    assert sent.method == method
    assert sent.url == (
        "https://hooks.example.com/q?name=Ada+Lovelace+%26+co&count=3&ratio=0.5&ok=true&off=false"
        "&none=null&obj=%7B%22c%22%3A%5B1%2C2%5D%7D&list=%5B%22x%22%2C%7B%22y%22%3A%22%C3%A9%22%7D%5D&empty="
    )
    assert sent.body is None
    assert unsigned(sent.headers) == {"A": "b", "User-Agent": USER_AGENT} | (
        {"Content-Length": "0"} if method == "DELETE" else {}
    )


def test_get_query_merges_with_the_urls_own_query(client, account, mocked):
    """Parameters already in the destination URL are kept, the data's are added after them."""
    DestinationFactory(account=account, url="https://hooks.example.com/q?source=dp&a=0", http_method="GET")
    mocked.get("https://hooks.example.com/q")
    ingest(client, account, b'{"a": 1, "b": "two"}')
    assert mocked.calls[0].request.url == "https://hooks.example.com/q?source=dp&a=0&a=1&b=two"


def test_token_is_never_forwarded(client, account, mocked):
    """The account's CL-X-TOKEN does not leave the service in headers, URL or body."""
    DestinationFactory(account=account, url="https://hooks.example.com/p", http_method="POST")
    DestinationFactory(account=account, url="https://hooks.example.com/g", http_method="GET")
    mocked.post("https://hooks.example.com/p")
    mocked.get("https://hooks.example.com/g")
    ingest(client, account, b'{"a": 1}')
    for call in mocked.calls:
        sent = call.request
        assert "CL-X-TOKEN" not in {name.upper() for name in sent.headers}
        assert account.app_secret_token not in sent.url + str(dict(sent.headers)) + str(sent.body)


def test_only_the_tokens_account_destinations_are_called(client, account, mocked):
    """Another account's destinations receive nothing."""
    DestinationFactory(account=account, url="https://mine.example.com/")
    DestinationFactory(url="https://theirs.example.com/")
    mocked.post("https://mine.example.com/")
    response = ingest(client, account, b"{}")
    assert [d["url"] for d in response.json()["deliveries"]] == ["https://mine.example.com/"]


def test_failures_are_reported_per_destination_and_do_not_stop_others(client, account, mocked):
    """500, 404, a redirect and a connection error are failed entries; the rest still succeed; answer 200."""
    urls = [f"https://d{i}.example.com/" for i in range(5)]
    destinations = [DestinationFactory(account=account, url=url) for url in urls]
    mocked.post(urls[0], status=500)
    mocked.post(urls[1], status=404)
    mocked.post(urls[2], status=302, headers={"Location": "https://elsewhere.example.com/"})
    mocked.post(urls[3], body=requests.ConnectionError("connection refused"))
    mocked.post(urls[4], status=201)
    response = ingest(client, account, b"{}")
    assert response.status_code == 200
    assert response.json()["deliveries"] == [
        delivery(destinations[0], "failed", 500, "destination answered HTTP 500"),
        delivery(destinations[1], "failed", 404, "destination answered HTTP 404"),
        delivery(destinations[2], "failed", 302, "destination answered HTTP 302"),
        delivery(destinations[3], "failed", None, "connection failed: connection refused"),
        delivery(destinations[4], "succeeded", 201),
    ]
    assert len(mocked.calls) == 5  # the redirect was not followed


def test_timeout_is_a_failed_entry(client, account, mocked, settings):
    """A read timeout is reported with the configured limit."""
    settings.DATAPUSHER_READ_TIMEOUT = 2.5
    destination = DestinationFactory(account=account, url="https://slow.example.com/")
    mocked.post("https://slow.example.com/", body=requests.ReadTimeout())
    response = ingest(client, account, b"{}")
    assert response.json()["deliveries"] == [
        delivery(destination, "failed", None, "read timed out after 2.5s")
    ]


def test_every_request_carries_the_configured_timeouts(client, account, mocked, settings):
    """Connect and read timeouts from settings are passed on every outbound request."""
    settings.DATAPUSHER_CONNECT_TIMEOUT = 1.5
    settings.DATAPUSHER_READ_TIMEOUT = 7
    DestinationFactory(account=account, url="https://a.example.com/", http_method="POST")
    DestinationFactory(account=account, url="https://b.example.com/", http_method="GET")
    mocked.post("https://a.example.com/")
    mocked.get("https://b.example.com/")
    ingest(client, account, b"{}")
    assert [call.request.req_kwargs["timeout"] for call in mocked.calls] == [(1.5, 7), (1.5, 7)]


def test_an_unexpected_error_in_one_delivery_is_a_failed_entry(client, account, mocked):
    """A bug-shaped exception while sending is isolated: failed entry, others delivered, 200."""
    broken = DestinationFactory(account=account, url="https://broken.example.com/")
    fine = DestinationFactory(account=account, url="https://fine.example.com/")
    mocked.post("https://broken.example.com/", body=RuntimeError("boom"))
    mocked.post("https://fine.example.com/")
    response = ingest(client, account, b"{}")
    assert response.status_code == 200
    assert response.json()["deliveries"] == [
        delivery(broken, "failed", None, "unexpected error: RuntimeError"),
        delivery(fine),
    ]


@pytest.mark.django_db(transaction=True)
def test_a_destination_deleted_while_the_event_is_stored_is_left_out(client, mocked, monkeypatch):
    """A destination deleted (and committed) after the ingest read the account's destinations: its
    delivery's foreign key fails at commit, and the event is stored again without it — 200, not 500."""
    account = AccountFactory()
    kept = DestinationFactory(account=account, url="https://kept.example.com/")
    gone = DestinationFactory(account=account, url="https://gone.example.com/")
    mocked.post("https://kept.example.com/", status=200)
    real_event_store = ingest_service._event_store
    raced = []

    def store_after_a_delete(**kwargs):
        if not raced:
            raced.append(Destination.objects.filter(pk=gone.pk).delete())
        return real_event_store(**kwargs)

    monkeypatch.setattr(ingest_service, "_event_store", store_after_a_delete)
    response = ingest(client, account)
    assert response.status_code == 200
    entries = response.json()["deliveries"]
    assert [(d["destination_id"], d["status"]) for d in entries] == [(kept.id, "succeeded")]
    stored = list(Delivery.objects.values_list("destination_id", flat=True))
    assert (Event.objects.count(), stored) == (1, [kept.id])


@pytest.mark.django_db(transaction=True)  # real transactions, not savepoints in the test's own
@pytest.mark.parametrize("count", [1, 3, 20])
def test_a_sync_ingest_is_one_read_and_two_short_write_transactions(client, mocked, count):
    """Whatever the number of destinations: one SELECT (token, account and destinations), then a
    transaction with the event and its deliveries, then one with the attempts and every outcome,
    the event's processed_at folded in — six statements, no savepoint."""
    account = AccountFactory()
    for i in range(count):
        DestinationFactory(account=account, url=f"https://h{i}.example.com/")
        mocked.post(f"https://h{i}.example.com/", status=200)
    with CaptureQueriesContext(connection) as captured:
        response = ingest(client, account)
    assert [d["status"] for d in response.json()["deliveries"]] == ["succeeded"] * count
    statements = [query["sql"].split(None, 1)[0].upper() for query in captured.captured_queries]
    work = [kind for kind in statements if kind not in ("BEGIN", "COMMIT")]
    assert work == ["SELECT", "INSERT", "INSERT", "INSERT", "WITH", "WITH"]
    if "COMMIT" in statements:  # SQLite shows its transactions; PostgreSQL's are implicit here
        assert statements == [
            "SELECT", "BEGIN", "INSERT", "INSERT", "COMMIT", "BEGIN", "INSERT", "WITH", "WITH", "COMMIT"
        ]  # fmt: skip
    assert Event.objects.get().processed_at is not None
    assert Delivery.objects.filter(status="succeeded", attempt_count=1, lease_id=None).count() == count


def test_the_answer_shows_destination_urls_without_credentials_or_query(client, mocked):
    """user:password@ and the query string may hold credentials: the ingest answer leaves them out
    (the request itself still carries them)."""
    destination = DestinationFactory(url="https://user:pa55@hooks.example.com/in?key=k3y")
    mocked.post(re.compile(r"https://(user:pa55@)?hooks\.example\.com/in\?key=k3y"), status=200)
    response = ingest(client, destination.account)
    assert response.status_code == 200
    assert [delivery["url"] for delivery in response.json()["deliveries"]] == ["https://hooks.example.com/in"]
    assert "pa55" not in response.content.decode() and "k3y" not in response.content.decode()
    assert mocked.calls[0].request.headers["Authorization"] == "Basic dXNlcjpwYTU1"
