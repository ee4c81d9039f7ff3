"""The log API's query parameters: date-times answer 400 when unusable, and filter lists only."""

from datetime import UTC, datetime

import pytest

from accounts.tests.factories import AccountFactory
from destinations.tests.factories import DestinationFactory
from server.models import Delivery, Event
from server.tests.helpers import ingest

pytestmark = pytest.mark.django_db

INVALID = "Enter a valid date/time."
OUT_OF_RANGE = "Enter a date/time between 0001-01-01 and 9999-12-31 in UTC."
# Every timestamp of the one event and delivery in these tests.
STAMP = datetime(2026, 1, 1, tzinfo=UTC)

# (list URL, what it lists, parameter, True for a lower bound (>=) / False for an upper bound (<))
DATE_TIME_FILTERS = [
    ("/api/events/", "event", "received_after", True),
    ("/api/events/", "event", "received_before", False),
    ("/api/deliveries/", "delivery", "created_after", True),
    ("/api/deliveries/", "delivery", "created_before", False),
    ("/api/deliveries/", "delivery", "processed_after", True),
    ("/api/deliveries/", "delivery", "processed_before", False),
]
# (value, the instant it names in UTC, or the error message)
VALUES = [
    ("2026-01-01T00:00:00Z", datetime(2026, 1, 1, tzinfo=UTC)),
    ("2026-01-01T00:00:00", datetime(2026, 1, 1, tzinfo=UTC)),
    ("2026-01-01T00:00:00+16:00", datetime(2025, 12, 31, 8, tzinfo=UTC)),
    ("2026-01-01T00:00:00-16:00", datetime(2026, 1, 1, 16, tzinfo=UTC)),
    ("2026-01-01T00:00:00+23:59", datetime(2025, 12, 31, 0, 1, tzinfo=UTC)),
    ("2026-01-01T00:00:00-23:59", datetime(2026, 1, 1, 23, 59, tzinfo=UTC)),
    ("9999-12-31T23:59:59Z", datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)),
    ("0001-01-01T00:00:00Z", datetime(1, 1, 1, tzinfo=UTC)),
    ("0001-01-01T00:00:00-01:00", datetime(1, 1, 1, 1, tzinfo=UTC)),
    ("2026-01-01T00:00:00+24:00", INVALID),
    ("2026-01-01T00:00:00-24:00", INVALID),
    ("0001-01-01T00:00:00+01:00", OUT_OF_RANGE),
    ("9999-12-31T23:00:00-05:00", OUT_OF_RANGE),
    ("garbage", INVALID),
]


@pytest.fixture
def pushed(client, mocked):
    """One event with one succeeded delivery, every timestamp set to STAMP."""
    account = AccountFactory()
    DestinationFactory(account=account, url="https://hooks.example.com/in")
    mocked.post("https://hooks.example.com/in", status=200)
    assert ingest(client, account).status_code == 200
    Event.objects.update(received_at=STAMP)
    Delivery.objects.update(created_at=STAMP, processed_at=STAMP)
    return {"event": Event.objects.get(), "delivery": Delivery.objects.get()}


@pytest.mark.parametrize(("value", "expected"), VALUES, ids=[value for value, _ in VALUES])
@pytest.mark.parametrize(
    ("url", "kind", "parameter", "lower_bound"), DATE_TIME_FILTERS, ids=[f[2] for f in DATE_TIME_FILTERS]
)
def test_date_time_filter(api_client, pushed, url, kind, parameter, lower_bound, value, expected):
    """A date-time filter compares in UTC, or answers 400 naming the parameter; never 500."""
    response = api_client.get(url, {parameter: value})
    if isinstance(expected, str):
        assert response.status_code == 400
        assert response.json() == {parameter: [expected]}
        return
    assert response.status_code == 200
    matches = expected <= STAMP if lower_bound else expected > STAMP
    item_id = str(getattr(pushed[kind], f"{kind}_id"))
    assert [item[f"{kind}_id"] for item in response.json()["results"]] == ([item_id] if matches else [])


def test_event_detail_ignores_list_parameters(api_client, pushed):
    """GET /api/events/{id}/ finds the event whatever list filters are in the query string."""
    url = f"/api/events/{pushed['event'].event_id}/"
    plain = api_client.get(url)
    response = api_client.get(url, {"received_after": "garbage", "account": str(AccountFactory().account_id)})
    assert (response.status_code, plain.status_code) == (200, 200)
    assert response.json() == plain.json()


def test_delivery_detail_ignores_list_parameters(api_client, pushed):
    """GET /api/deliveries/{id}/ finds the delivery whatever list filters are in the query string."""
    url = f"/api/deliveries/{pushed['delivery'].delivery_id}/"
    plain = api_client.get(url)
    response = api_client.get(url, {"status": "x", "created_before": "0001-01-01T00:00:00Z"})
    assert (response.status_code, plain.status_code) == (200, 200)
    assert response.json() == plain.json()


def test_retry_ignores_list_parameters(api_client, pushed, mocked):
    """POST /api/deliveries/{id}/retry/?status=x retries the delivery instead of answering 400."""
    delivery_id = str(pushed["delivery"].delivery_id)
    response = api_client.post(f"/api/deliveries/{delivery_id}/retry/?status=x")
    assert response.status_code == 200
    body = response.json()
    assert (body["delivery_id"], body["status"], body["attempt_count"]) == (delivery_id, "succeeded", 2)


def test_redeliver_ignores_list_parameters(api_client, pushed, mocked):
    """POST /api/events/{id}/redeliver/?account=x redelivers instead of answering 400."""
    response = api_client.post(f"/api/events/{pushed['event'].event_id}/redeliver/?account=x&all=true")
    assert response.status_code == 200
    assert [(d["delivery_id"], d["status"], d["attempt_count"]) for d in response.json()] == [
        (str(pushed["delivery"].delivery_id), "succeeded", 2)
    ]


def test_list_still_applies_the_filters(api_client, pushed):
    """The list keeps filtering: another account's id leaves it empty."""
    response = api_client.get("/api/events/", {"account": str(AccountFactory().account_id)})
    assert response.status_code == 200
    assert response.json()["results"] == []


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("99999999999999999999999", "Ensure this value is less than or equal to 9223372036854775807."),
        ("-1", "Ensure this value is greater than or equal to 1."),
        ("1.5", "Enter a whole number."),
        ("x", "Enter a whole number."),
    ],
)
def test_destination_filter_takes_only_ids_the_database_can_hold(api_client, pushed, value, error):
    """?destination= is a whole number from 1 to 2^63-1: anything else is a 400 naming it, never a 500."""
    response = api_client.get("/api/deliveries/", {"destination": value})
    assert (response.status_code, response.json()) == (400, {"destination": [error]})


def test_destination_filter_matches_its_deliveries(api_client, pushed):
    """A valid id filters as before."""
    destination_id = pushed["delivery"].destination_id
    ids = [
        d["destination_id"]
        for d in api_client.get("/api/deliveries/", {"destination": destination_id}).json()["results"]
    ]
    assert ids == [destination_id]
