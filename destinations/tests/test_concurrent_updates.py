"""A destination PATCH racing another write: each writes only its own fields."""

import pytest

from destinations import services
from destinations.models import Destination
from destinations.services import destination_rotate_secret
from destinations.tests.factories import DestinationFactory

pytestmark = pytest.mark.django_db


def test_patch_racing_a_secret_rotation_keeps_the_rotated_secret(api_client, before_update):
    """A signing-secret rotation that lands while a PATCH is in flight is not undone by its save,
    and the PATCH's answer shows the rotated secret."""
    destination = DestinationFactory(url="https://hooks.example.com/old")
    rotated = []

    def rotate():
        fresh = Destination.objects.get(pk=destination.pk)
        rotated.append(destination_rotate_secret(destination=fresh).signing_secret)

    before_update(services, rotate)

    response = api_client.patch(
        f"/api/destinations/{destination.pk}/", {"url": "https://hooks.example.com/new"}, format="json"
    )

    assert response.status_code == 200
    stored = Destination.objects.get(pk=destination.pk)
    assert len(rotated) == 1
    assert rotated[0] != destination.signing_secret
    assert (stored.url, stored.signing_secret) == ("https://hooks.example.com/new", rotated[0])
    assert response.json()["signing_secret"] == rotated[0]
