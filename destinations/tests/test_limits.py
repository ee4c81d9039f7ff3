"""A destination's rate_limit and max_in_flight through the API: set, changed, cleared, validated."""

import pytest

from accounts.tests.factories import AccountFactory
from destinations.models import Destination
from destinations.tests.factories import DestinationFactory
from destinations.tests.test_api import LIST_URL, detail_url, payload

pytestmark = pytest.mark.django_db


def test_create_without_limits_has_none(api_client):
    """Left out on create, both limits are null."""
    response = api_client.post(LIST_URL, payload(AccountFactory()), format="json")
    assert (response.json()["rate_limit"], response.json()["max_in_flight"]) == (None, None)
    assert Destination.objects.filter(rate_limit__isnull=True, max_in_flight__isnull=True).count() == 1


def test_create_with_limits_stores_them(api_client):
    """Given on create, a fractional rate and a whole in-flight count are stored and answered."""
    body = payload(AccountFactory(), rate_limit=2.5, max_in_flight=3)
    response = api_client.post(LIST_URL, body, format="json")
    assert response.status_code == 201
    assert (response.json()["rate_limit"], response.json()["max_in_flight"]) == (2.5, 3)
    destination = Destination.objects.get()
    assert (destination.rate_limit, destination.max_in_flight) == (2.5, 3)


def test_patch_changes_only_the_limit_it_names(api_client):
    """PATCH of rate_limit leaves max_in_flight (and the rest) as they were."""
    destination = DestinationFactory(rate_limit=5, max_in_flight=2)
    response = api_client.patch(detail_url(destination.pk), {"rate_limit": 0.5}, format="json")
    assert response.status_code == 200
    destination.refresh_from_db()
    assert (destination.rate_limit, destination.max_in_flight) == (0.5, 2)


def test_patch_null_clears_a_limit(api_client):
    """PATCH with null removes the limit."""
    destination = DestinationFactory(rate_limit=5, max_in_flight=2)
    body = {"rate_limit": None, "max_in_flight": None}
    assert api_client.patch(detail_url(destination.pk), body, format="json").status_code == 200
    destination.refresh_from_db()
    assert (destination.rate_limit, destination.max_in_flight) == (None, None)


def test_put_without_limits_clears_them(api_client):
    """PUT replaces the destination: limits left out are none, as on create."""
    destination = DestinationFactory(rate_limit=5, max_in_flight=2)
    response = api_client.put(detail_url(destination.pk), payload(destination.account), format="json")
    assert response.status_code == 200
    destination.refresh_from_db()
    assert (destination.rate_limit, destination.max_in_flight) == (None, None)


RATE_RANGE = "Ensure this value is {} or equal to {}."


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("rate_limit", 0, RATE_RANGE.format("greater than", 0.001)),
        ("rate_limit", -1, RATE_RANGE.format("greater than", 0.001)),
        ("rate_limit", 0.0001, RATE_RANGE.format("greater than", 0.001)),
        ("rate_limit", 10000.5, RATE_RANGE.format("less than", 10000)),
        ("rate_limit", 1e308, RATE_RANGE.format("less than", 10000)),
        ("rate_limit", "fast", "A valid number is required."),
        ("rate_limit", "nan", "A valid number is required."),
        ("rate_limit", True, "A valid number is required."),
        ("rate_limit", [5], "A valid number is required."),
        ("max_in_flight", 0, RATE_RANGE.format("greater than", 1)),
        ("max_in_flight", -3, RATE_RANGE.format("greater than", 1)),
        ("max_in_flight", 10001, RATE_RANGE.format("less than", 10000)),
        ("max_in_flight", 2**70, RATE_RANGE.format("less than", 10000)),
        ("max_in_flight", 1.5, "A valid integer is required."),
        ("max_in_flight", "two", "A valid integer is required."),
        ("max_in_flight", True, "A valid integer is required."),
    ],
)
def test_bad_limits_are_400_naming_the_field(api_client, field, value, message):
    """A limit out of range or not a number answers 400 with that field's error, on create and on
    PATCH; nothing is stored or changed."""
    created = api_client.post(LIST_URL, payload(AccountFactory(), **{field: value}), format="json")
    assert (created.status_code, created.json()) == (400, {field: [message]})
    destination = DestinationFactory(rate_limit=5, max_in_flight=2)
    patched = api_client.patch(detail_url(destination.pk), {field: value}, format="json")
    assert (patched.status_code, patched.json()) == (400, {field: [message]})
    destination.refresh_from_db()
    assert (destination.rate_limit, destination.max_in_flight) == (5, 2)


def admin_change(admin_client, destination, **limits):
    """Save the destination's admin change page with these limits ("" for none)."""
    form = {
        "account": str(destination.account_id),
        "url": destination.url,
        "http_method": destination.http_method,
        "headers": "{}",
        "enabled": "on",
        **limits,
    }
    return admin_client.post(f"/admin/destinations/destination/{destination.pk}/change/", form)


def test_the_admin_sets_and_clears_the_limits(admin_client):
    """Staff set both limits on the destination's page, and clear them with empty fields."""
    destination = DestinationFactory(url="https://hooks.example.com/in")
    assert admin_change(admin_client, destination, rate_limit="0.5", max_in_flight="4").status_code == 302
    destination.refresh_from_db()
    assert (destination.rate_limit, destination.max_in_flight) == (0.5, 4)
    assert admin_change(admin_client, destination, rate_limit="", max_in_flight="").status_code == 302
    destination.refresh_from_db()
    assert (destination.rate_limit, destination.max_in_flight) == (None, None)


def test_the_admin_refuses_limits_out_of_range(admin_client):
    """A rate of 0 and a max_in_flight of 0 are form errors on their fields; nothing changes."""
    destination = DestinationFactory(url="https://hooks.example.com/in", rate_limit=5, max_in_flight=2)
    response = admin_change(admin_client, destination, rate_limit="0", max_in_flight="0")
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert errors == {
        "rate_limit": ["Ensure this value is greater than or equal to 0.001."],
        "max_in_flight": ["Ensure this value is greater than or equal to 1."],
    }
    destination.refresh_from_db()
    assert (destination.rate_limit, destination.max_in_flight) == (5, 2)
