"""POST /server/incoming_data in the OpenAPI schema: its headers, body, every status, and examples
that are the ingest's real answers."""

from collections.abc import Callable

import pytest
from django.db import OperationalError
from drf_spectacular.validation import validate_schema

from accounts.tests.factories import AccountFactory
from datapusher.schema import DELIVERY_EXAMPLE, EVENT_ID_EXAMPLE, INGEST_PATH
from destinations.tests.factories import DestinationFactory
from server.models import Event
from server.tests.helpers import INGEST_URL, ingest

pytestmark = pytest.mark.django_db

STATUSES = ["200", "202", "400", "401", "405", "409", "411", "413", "429", "503"]


@pytest.fixture
def operation(client) -> dict:
    """The ingest's operation in the schema as served."""
    return client.get("/api/schema/", {"format": "json"}).json()["paths"][INGEST_PATH]["post"]


def test_the_schema_with_the_ingest_is_valid_openapi(client):
    """The served schema, the ingest's path added by hand included, passes OpenAPI 3.0 validation."""
    validate_schema(client.get("/api/schema/", {"format": "json"}).json())


def test_the_schema_documents_the_ingest_headers_and_body(operation):
    """CL-X-TOKEN (required) and CL-X-EVENT-ID (optional) headers, a JSON object body, no API token."""
    parameters = {p["name"]: (p["in"], p["required"]) for p in operation["parameters"]}
    assert parameters == {"CL-X-TOKEN": ("header", True), "CL-X-EVENT-ID": ("header", False)}
    body = operation["requestBody"]
    assert body["required"] is True
    assert body["content"]["application/json"]["schema"]["type"] == "object"
    assert operation["security"] == []


def test_the_schema_documents_every_status_of_the_ingest(operation):
    """Every status the ingest answers, each with a description and at least one example."""
    assert sorted(operation["responses"]) == STATUSES
    for response in operation["responses"].values():
        assert response["description"]
        assert response["content"]["application/json"]["examples"]


def test_rate_limit_and_unavailable_document_retry_after(operation):
    """429 and 503 document Retry-After; 405 documents Allow."""
    responses = operation["responses"]
    assert list(responses["429"]["headers"]) == ["Retry-After"]
    assert list(responses["503"]["headers"]) == ["Retry-After"]
    assert list(responses["405"]["headers"]) == ["Allow"]


def with_destination(account):
    """The example's destination, answering 200."""
    return DestinationFactory(account=account, url=DELIVERY_EXAMPLE["url"], http_method="POST")


def sent_twice(client, account, second: bytes):
    ingest(client, account, event_id="order-7")
    return ingest(client, account, second, event_id="order-7")


def length_required(client, account):
    return client.generic(
        "POST",
        INGEST_URL,
        b"",
        content_type="application/json",
        headers={"CL-X-TOKEN": account.app_secret_token, "Transfer-Encoding": "chunked"},
    )


def refused_by_the_database(client, account, monkeypatch):
    def unavailable(**_):
        raise OperationalError("connection refused")

    monkeypatch.setattr("server.views.ingest_target_by_token", unavailable)
    return ingest(client, account)


def rate_limited(client, account):
    account.rate_limit = "1/hour"
    account.save(update_fields=["rate_limit"])
    ingest(client, account)
    return ingest(client, account)


# (status, example name) -> how to get that answer: call(client, account, settings, monkeypatch).
CASES: dict[tuple[str, str], Callable] = {
    ("200", "received"): lambda c, a, s, m: ingest(c, a),
    ("200", "duplicate"): lambda c, a, s, m: sent_twice(c, a, b'{"a": 1}'),
    ("202", "queued"): lambda c, a, s, m: ingest(c, a),
    ("400", "not-json"): lambda c, a, s, m: ingest(c, a, b"order=7"),
    ("400", "not-an-object"): lambda c, a, s, m: ingest(c, a, b"[1, 2]"),
    ("400", "content-type"): lambda c, a, s, m: ingest(c, a, content_type="text/plain"),
    ("400", "charset"): lambda c, a, s, m: ingest(c, a, content_type="application/json; charset=latin-1"),
    ("400", "encoding"): lambda c, a, s, m: ingest(c, a, b"\xff"),
    ("400", "event-id"): lambda c, a, s, m: ingest(c, a, event_id="tab\there"),
    ("401", "unauthenticated"): lambda c, a, s, m: c.post(INGEST_URL, b"{}", content_type="application/json"),
    ("405", "method"): lambda c, a, s, m: c.get(INGEST_URL, headers={"CL-X-TOKEN": a.app_secret_token}),
    ("409", "conflict"): lambda c, a, s, m: sent_twice(c, a, b'{"a": 2}'),
    ("411", "length-required"): lambda c, a, s, m: length_required(c, a),
    ("413", "too-large"): lambda c, a, s, m: ingest(c, a, b'{"a": "%s"}' % (b"x" * 200)),
    ("429", "too-many"): lambda c, a, s, m: rate_limited(c, a),
    ("503", "unavailable"): lambda c, a, s, m: refused_by_the_database(c, a, m),
}


def as_documented(answer: dict) -> dict:
    """The answer with its generated ids (and measured durations) in the documented example's place."""
    if "event_id" not in answer:
        return answer
    deliveries = [
        delivery
        | {key: DELIVERY_EXAMPLE[key] for key in ("delivery_id", "destination_id")}
        | ({"duration_ms": 84} if isinstance(delivery["duration_ms"], int) else {})
        for delivery in answer["deliveries"]
    ]
    return answer | {"event_id": EVENT_ID_EXAMPLE, "deliveries": deliveries}


def test_every_case_has_an_example_and_every_example_a_case(operation):
    """The examples below are all the schema has, and the schema has them all."""
    documented = {
        (status, name)
        for status, response in operation["responses"].items()
        for name in response["content"]["application/json"]["examples"]
    }
    assert documented == set(CASES)


@pytest.mark.parametrize(("status", "name"), list(CASES))
def test_each_example_is_the_ingests_real_answer(
    client, mocked, settings, monkeypatch, published, operation, status, name
):
    """Sending the example's case gets that status and exactly that body."""
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    if status == "202":
        settings.DATAPUSHER_DELIVERY_MODE = "queue"
    elif status in ("200", "409"):
        mocked.post(DELIVERY_EXAMPLE["url"], status=200)
    account = AccountFactory()
    with_destination(account)
    response = CASES[status, name](client, account, settings, monkeypatch)
    example = operation["responses"][status]["content"]["application/json"]["examples"][name]["value"]
    assert response.status_code == int(status)
    assert as_documented(response.json()) == example
    if status in ("200", "202"):
        assert response.json()["event_id"] == str(Event.objects.get().event_id)
    for header in operation["responses"][status].get("headers", {}):
        assert response.has_header(header)


def test_the_schema_takes_every_answer_of_a_delivery_entry(client):
    """An entry of the ingest's answer may name any method a destination has (DELETE too) and a
    destination deleted since (destination_id null, in a duplicate's answer)."""
    entry = client.get("/api/schema/", {"format": "json"}).json()["components"]["schemas"]["IngestDelivery"]
    assert entry["properties"]["http_method"]["enum"] == ["GET", "POST", "PUT", "PATCH", "DELETE"]
    assert entry["properties"]["destination_id"] == {"type": "integer", "nullable": True}
