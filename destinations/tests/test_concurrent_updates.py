"""A destination PATCH racing another write: each writes only its own fields."""

import pytest

from destinations import services
from destinations.models import Destination
from destinations.services import destination_rotate_secret
from destinations.tests.factories import DestinationFactory

pytestmark = pytest.mark.django_db


def test_patch_racing_a_secret_rotation_keeps_the_rotated_secret(api_client, monkeypatch):
    """A signing-secret rotation that lands while a PATCH is in flight is not undone by its save."""
    destination = DestinationFactory(url="https://hooks.example.com/old")
    rotated = []
    real_model_update = services.model_update

    def racing_model_update(**kwargs):
        fresh = Destination.objects.get(pk=destination.pk)
        rotated.append(destination_rotate_secret(destination=fresh).signing_secret)
        return real_model_update(**kwargs)

    monkeypatch.setattr(services, "model_update", racing_model_update)

    response = api_client.patch(
        f"/api/destinations/{destination.pk}/", {"url": "https://hooks.example.com/new"}, format="json"
    )

    assert response.status_code == 200
    stored = Destination.objects.get(pk=destination.pk)
    assert len(rotated) == 1
    assert rotated[0] != destination.signing_secret
    assert (stored.url, stored.signing_secret) == ("https://hooks.example.com/new", rotated[0])
