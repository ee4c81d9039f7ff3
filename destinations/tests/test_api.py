import re
import uuid

import pytest
from rest_framework.test import APIClient

from accounts.tests.factories import AccountFactory
from destinations.models import Destination
from destinations.tests.factories import DestinationFactory

pytestmark = pytest.mark.django_db

LIST_URL = "/api/destinations/"
SEED_HEADERS = {
    "APP_ID": "1234APPID1234",
    "APP_SECTET": "enwdj3bshwer43bjhjs9ereuinkjcnsiurew8s",
    "ACTION": "user.update",
    "Content-Type": "application/json",
    "Accept": "*",
}


def bad_value(name: str) -> str:
    return (
        f"The value of header {name!r} contains characters not allowed in a header "
        "(line breaks, control characters, leading or trailing whitespace)."
    )


def detail_url(destination_id) -> str:
    return f"{LIST_URL}{destination_id}/"


def payload(owner, **overrides) -> dict:
    return {
        "account": str(owner.account_id),
        "url": "https://hooks.example.com/in",
        "http_method": "POST",
        "headers": SEED_HEADERS,
        **overrides,
    }


def test_anonymous_is_refused_with_401():
    """The destinations API needs authentication."""
    assert APIClient().get(LIST_URL).status_code == 401


def test_create_returns_the_destination(api_client):
    """POST creates a destination with the seed's headers, exactly as given."""
    account = AccountFactory()
    response = api_client.post(LIST_URL, payload(account), format="json")
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {
        "id",
        "account",
        "url",
        "http_method",
        "headers",
        "auth",
        "enabled",
        "rate_limit",
        "max_in_flight",
        "disabled_reason",
        "circuit",
        "signing_secret",
        "created_at",
        "updated_at",
    }
    assert body["circuit"] == {"state": "closed", "consecutive_failures": 0, "next_probe_at": None}
    assert re.fullmatch(r"whsec_[A-Za-z0-9+/]{43}=", body["signing_secret"])
    assert body["account"] == str(account.account_id)
    assert body["headers"] == SEED_HEADERS
    destination = Destination.objects.get(id=body["id"])
    assert (destination.account_id, destination.url, destination.http_method, destination.headers) == (
        account.account_id,
        "https://hooks.example.com/in",
        "POST",
        SEED_HEADERS,
    )


@pytest.mark.parametrize("method", ["get", "Post", "put", "PATCH", "delete"])
def test_http_method_accepts_any_case_and_stores_upper(api_client, method):
    """`post`, `Post` and `POST` are all POST."""
    response = api_client.post(LIST_URL, payload(AccountFactory(), http_method=method), format="json")
    assert response.status_code == 201
    assert response.json()["http_method"] == method.upper()
    assert Destination.objects.get().http_method == method.upper()


def test_empty_headers_object_is_allowed(api_client):
    """A destination may have no headers."""
    response = api_client.post(LIST_URL, payload(AccountFactory(), headers={}), format="json")
    assert (response.status_code, response.json()["headers"]) == (201, {})


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"http_method": "HEAD"}, "http_method", '"HEAD" is not a valid choice.'),
        ({"http_method": 7}, "http_method", '"7" is not a valid choice.'),
        ({"url": "not a url"}, "url", "Enter a valid URL."),
        ({"url": "/relative/path"}, "url", "Enter a valid URL."),
        ({"url": "ftp://files.example.com/x"}, "url", "Enter a valid URL."),
        ({"url": "file:///etc/passwd"}, "url", "Enter a valid URL."),
        (
            {"headers": ["APP_ID", "1"]},
            "headers",
            "Headers must be a JSON object of header name to string value.",
        ),
        (
            {"headers": "APP_ID: 1"},
            "headers",
            "Headers must be a JSON object of header name to string value.",
        ),
        ({"headers": None}, "headers", "This field may not be null."),
        ({"headers": {"APP_ID": 1}}, "headers", "The value of header 'APP_ID' must be a string."),
        ({"headers": {"APP_ID": None}}, "headers", "The value of header 'APP_ID' must be a string."),
        ({"headers": {"Bad Name": "x"}}, "headers", "'Bad Name' is not a valid header name."),
        ({"headers": {"": "x"}}, "headers", "'' is not a valid header name."),
        ({"headers": {"X-A:": "x"}}, "headers", "'X-A:' is not a valid header name."),
        ({"headers": {"X-A": "1\r\nX-Injected: yes"}}, "headers", bad_value("X-A")),
        ({"headers": {"X-A": "1\nX-Injected: yes"}}, "headers", bad_value("X-A")),
        ({"headers": {"X-A": "a\x00b"}}, "headers", bad_value("X-A")),
        ({"headers": {"X-A": "snow ☃"}}, "headers", bad_value("X-A")),
        ({"headers": {"X-A": "1", "x-a": "2"}}, "headers", "Header 'x-a' is given more than once."),
        (
            {"headers": {"Content-Length": "5"}},
            "headers",
            "'Content-Length' is set by Data Pusher and cannot be configured.",
        ),
        (
            {"headers": {"Host": "internal"}},
            "headers",
            "'Host' is set by Data Pusher and cannot be configured.",
        ),
        (
            {"headers": {"Webhook-Foo": "1"}},
            "headers",
            "'Webhook-Foo' is set by Data Pusher and cannot be configured.",
        ),
        ({"headers": {f"X-{i}": "v" for i in range(51)}}, "headers", "At most 50 headers are allowed."),
    ],
)
def test_create_rejects_invalid_fields(api_client, overrides, field, message):
    """Bad method, URL or headers answer 400 with one field error; nothing is stored."""
    response = api_client.post(LIST_URL, payload(AccountFactory(), **overrides), format="json")
    assert response.status_code == 400
    assert response.json() == {field: [message]}
    assert Destination.objects.count() == 0


@pytest.mark.parametrize("field", ["account", "url", "http_method"])
def test_create_requires_each_field(api_client, field):
    """account, url and http_method are required."""
    body = payload(AccountFactory())
    del body[field]
    response = api_client.post(LIST_URL, body, format="json")
    assert response.status_code == 400
    assert response.json() == {field: ["This field is required."]}


def test_create_without_headers_sends_none(api_client):
    """headers may be left out: the destination has none ({})."""
    body = payload(AccountFactory())
    del body["headers"]
    response = api_client.post(LIST_URL, body, format="json")
    assert (response.status_code, response.json()["headers"]) == (201, {})
    assert Destination.objects.get().headers == {}


def test_put_without_headers_clears_them(api_client):
    """PUT replaces the destination: headers left out are none ({}), as on create."""
    destination = DestinationFactory(headers={"X-Old": "1"})
    body = payload(destination.account)
    del body["headers"]
    response = api_client.put(detail_url(destination.pk), body, format="json")
    assert (response.status_code, response.json()["headers"]) == (200, {})
    destination.refresh_from_db()
    assert destination.headers == {}


def test_create_for_unknown_account_is_400(api_client):
    """An account_id that does not exist is a field error."""
    unknown = uuid.uuid4()
    response = api_client.post(LIST_URL, payload(AccountFactory(), account=str(unknown)), format="json")
    assert response.status_code == 400
    assert response.json() == {"account": [f'Invalid pk "{unknown}" - object does not exist.']}


@pytest.mark.parametrize("account", ["not-a-uuid", 12, True])
def test_create_with_malformed_account_is_400(api_client, account):
    """A malformed account id is a field error, never a 500."""
    response = api_client.post(LIST_URL, payload(AccountFactory(), account=account), format="json")
    assert response.status_code == 400
    assert list(response.json()) == ["account"]


def test_header_values_may_hold_inner_spaces_and_tabs(api_client):
    """Inner whitespace is a legitimate part of a header value."""
    headers = {"Authorization": "Bearer abc", "X-List": "a,\tb"}
    response = api_client.post(LIST_URL, payload(AccountFactory(), headers=headers), format="json")
    assert (response.status_code, response.json()["headers"]) == (201, headers)


def test_list_filters_by_account(api_client):
    """?account=<account_id> returns only that account's destinations."""
    mine = DestinationFactory.create_batch(2)
    account = mine[0].account
    mine[1].account = account
    mine[1].save()
    DestinationFactory()
    response = api_client.get(LIST_URL, {"account": str(account.account_id)})
    assert response.status_code == 200
    assert [d["id"] for d in response.json()["results"]] == [d.id for d in mine]


def test_list_filter_by_unknown_account_is_empty(api_client):
    """Filtering by an account that does not exist matches nothing."""
    DestinationFactory()
    response = api_client.get(LIST_URL, {"account": str(uuid.uuid4())})
    assert (response.status_code, response.json()["count"]) == (200, 0)


def test_list_filter_with_malformed_account_is_400(api_client):
    """A malformed account filter is a 400 naming the parameter."""
    response = api_client.get(LIST_URL, {"account": "nope"})
    assert response.status_code == 400
    assert response.json() == {"account": ["Enter a valid UUID."]}


def test_list_query_count_does_not_grow(api_client, django_assert_max_num_queries):
    """Listing 50 destinations takes a constant handful of queries."""
    DestinationFactory.create_batch(50)
    with django_assert_max_num_queries(4):
        assert len(api_client.get(LIST_URL, {"page_size": 50}).json()["results"]) == 50


def test_account_destinations_lists_only_that_account(api_client):
    """GET /api/accounts/{id}/destinations/ lists that account's destinations, paginated."""
    destination = DestinationFactory()
    DestinationFactory()
    response = api_client.get(f"/api/accounts/{destination.account.account_id}/destinations/")
    assert response.status_code == 200
    assert response.json()["count"] == 1
    assert response.json()["results"][0]["id"] == destination.id


@pytest.mark.parametrize("account_id", [uuid.uuid4(), "not-a-uuid"])
def test_account_destinations_unknown_account_is_404(api_client, account_id):
    """Unknown or malformed account ids are a JSON 404."""
    response = api_client.get(f"/api/accounts/{account_id}/destinations/")
    assert response.status_code == 404
    assert response.headers["Content-Type"] == "application/json"


def test_account_destinations_needs_authentication():
    """The nested list is behind the same authentication."""
    destination = DestinationFactory()
    assert APIClient().get(f"/api/accounts/{destination.account.account_id}/destinations/").status_code == 401


def test_retrieve(api_client):
    """GET by id returns the destination."""
    destination = DestinationFactory()
    response = api_client.get(detail_url(destination.id))
    assert (response.status_code, response.json()["url"]) == (200, destination.url)


@pytest.mark.parametrize("destination_id", [999999, "abc"])
def test_retrieve_unknown_or_malformed_id_is_404(api_client, destination_id):
    """Unknown and malformed ids are a 404."""
    assert api_client.get(detail_url(destination_id)).status_code == 404


def test_put_replaces_the_destination(api_client):
    """PUT replaces url, method and headers."""
    destination = DestinationFactory()
    body = payload(
        destination.account, url="https://new.example.com/x", http_method="put", headers={"A": "b"}
    )
    response = api_client.put(detail_url(destination.id), body, format="json")
    assert response.status_code == 200
    destination.refresh_from_db()
    assert (destination.url, destination.http_method, destination.headers) == (
        "https://new.example.com/x",
        "PUT",
        {"A": "b"},
    )


def test_patch_updates_only_given_fields(api_client):
    """PATCH changes just what it names."""
    destination = DestinationFactory(http_method="POST")
    response = api_client.patch(detail_url(destination.id), {"http_method": "get"}, format="json")
    assert response.status_code == 200
    destination.refresh_from_db()
    assert (destination.http_method, destination.url) == ("GET", destination.url)


def test_patch_rejects_header_injection(api_client):
    """PATCH validates headers like create does; the stored headers are untouched."""
    destination = DestinationFactory(headers={"A": "1"})
    response = api_client.patch(detail_url(destination.id), {"headers": {"A": "1\r\nB: 2"}}, format="json")
    assert response.status_code == 400
    destination.refresh_from_db()
    assert destination.headers == {"A": "1"}


def test_delete(api_client):
    """DELETE answers 200 with no unsent delivery gone with it, and removes only that destination."""
    destination, other = DestinationFactory.create_batch(2)
    response = api_client.delete(detail_url(destination.id))
    assert (response.status_code, response.json()) == (200, {"deleted_pending": 0})
    assert list(Destination.objects.values_list("id", flat=True)) == [other.id]


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("http://127.0.0.1:8000/hook", "127.0.0.1"),
        ("http://localhost/hook", "localhost"),
        ("http://api.localhost/hook", "api.localhost"),
        ("http://[::1]/hook", "::1"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254"),
        ("http://10.0.0.7/hook", "10.0.0.7"),
        ("http://[::ffff:192.168.0.1]/hook", "::ffff:192.168.0.1"),
    ],
)
def test_create_refuses_literal_internal_addresses(api_client, settings, url, host):
    """A URL whose host is a literal disallowed IP or localhost is a 400 unless its network is allowed."""
    settings.DATAPUSHER_ALLOWED_NETWORKS = []
    response = api_client.post(LIST_URL, payload(AccountFactory(), url=url), format="json")
    assert response.status_code == 400
    assert response.json() == {"url": [f"destination address not allowed: {host}"]}


def test_create_accepts_internal_address_in_allowed_networks(api_client, settings):
    """Listing the network in DATAPUSHER_ALLOWED_NETWORKS lets the destination be created."""
    settings.DATAPUSHER_ALLOWED_NETWORKS = ["10.0.0.0/8"]
    response = api_client.post(LIST_URL, payload(AccountFactory(), url="http://10.0.0.7/hook"), format="json")
    assert response.status_code == 201


def test_signing_secret_is_shown_on_create_and_then_only_at_secret(api_client):
    """Create answers the secret once; detail, list, PATCH answers never carry it; GET .../secret/
    gives it to an account admin, with no previous secret before any rotation."""
    account = AccountFactory()
    created = api_client.post(
        "/api/destinations/",
        {
            "account": str(account.account_id),
            "url": "https://hooks.example.com/s",
            "http_method": "POST",
            "headers": {},
        },
        format="json",
    )
    assert created.status_code == 201
    secret = created.json()["signing_secret"]
    destination_id = created.json()["id"]
    for answer in (
        api_client.get(f"/api/destinations/{destination_id}/"),
        api_client.get("/api/destinations/"),
        api_client.get(f"/api/accounts/{account.account_id}/destinations/"),
        api_client.patch(f"/api/destinations/{destination_id}/", {"headers": {"X-A": "1"}}, format="json"),
    ):
        assert answer.status_code == 200
        assert secret not in answer.content.decode()
        assert "signing_secret" not in answer.content.decode()
    assert api_client.get(f"/api/destinations/{destination_id}/secret/").json() == {
        "signing_secret": secret,
        "previous_signing_secret": None,
        "previous_secret_expires_at": None,
    }


def test_secret_shows_the_previous_secret_while_it_still_signs(api_client):
    """After a rotation, .../secret/ names the new secret and the previous one with its end."""
    destination = DestinationFactory()
    old = destination.signing_secret
    new = api_client.post(f"/api/destinations/{destination.id}/rotate-secret/").json()["signing_secret"]
    body = api_client.get(f"/api/destinations/{destination.id}/secret/").json()
    assert (body["signing_secret"], body["previous_signing_secret"]) == (new, old)
    assert body["previous_secret_expires_at"] is not None
