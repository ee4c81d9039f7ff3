"""The destinations list's ?account= filter applies to the list only."""

import pytest

from accounts.tests.factories import AccountFactory
from destinations.models import Destination
from destinations.tests.factories import DestinationFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("account", ["x", "00000000-0000-0000-0000-000000000000"])
def test_detail_ignores_the_account_filter(api_client, account):
    """GET /api/destinations/{id}/?account=... finds the destination, malformed or other account."""
    destination = DestinationFactory()
    url = f"/api/destinations/{destination.pk}/"
    plain = api_client.get(url)
    response = api_client.get(url, {"account": account})
    assert (response.status_code, plain.status_code) == (200, 200)
    assert response.json() == plain.json()


def test_patch_ignores_the_account_filter(api_client):
    """PATCH /api/destinations/{id}/?account=<another account> updates the destination."""
    destination = DestinationFactory(http_method="POST")
    response = api_client.patch(
        f"/api/destinations/{destination.pk}/?account={AccountFactory().account_id}",
        {"http_method": "PUT"},
        format="json",
    )
    assert response.status_code == 200
    assert Destination.objects.get(pk=destination.pk).http_method == "PUT"


def test_rotate_secret_ignores_the_account_filter(api_client):
    """POST /api/destinations/{id}/rotate-secret/?account=x rotates instead of answering 400."""
    destination = DestinationFactory()
    response = api_client.post(f"/api/destinations/{destination.pk}/rotate-secret/?account=x")
    assert response.status_code == 200
    stored = Destination.objects.get(pk=destination.pk)
    assert stored.signing_secret == response.json()["signing_secret"] != destination.signing_secret


def test_list_still_filters_by_account(api_client):
    """The list keeps its filter: a malformed account is 400, another account's id lists nothing."""
    DestinationFactory()
    malformed = api_client.get("/api/destinations/", {"account": "x"})
    other = api_client.get("/api/destinations/", {"account": str(AccountFactory().account_id)})
    assert (malformed.status_code, malformed.json()) == (400, {"account": ["Enter a valid UUID."]})
    assert (other.status_code, other.json()["results"]) == (200, [])
