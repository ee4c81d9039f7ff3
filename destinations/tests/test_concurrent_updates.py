"""A destination PATCH racing another write: each writes only its own fields."""

import pytest
from django.utils import timezone

from destinations import services
from destinations.models import Destination
from destinations.services import destination_rotate_secret
from destinations.tests.factories import DestinationFactory
from server.tests.helpers import at_once

pytestmark = pytest.mark.django_db


def test_patch_racing_a_secret_rotation_keeps_the_rotated_secret(api_client, before_update):
    """A signing-secret rotation that lands while a PATCH is in flight is not undone by its save
    (and the PATCH's answer, like every answer but create and rotate, carries no secret)."""
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
    assert "signing_secret" not in response.json()
    assert (stored.previous_signing_secret, stored.signing_secret) == (destination.signing_secret, rotated[0])


@pytest.mark.django_db(transaction=True)
def test_two_rotations_at_once_keep_every_secret_they_handed_out_valid(concurrent_writers):
    """Each rotation moves the secret stored when it writes to `previous` (F()), so whatever secret
    either answer handed out still signs deliveries; the original one is out."""
    destination = DestinationFactory()
    original = destination.signing_secret
    answers = at_once(
        lambda: destination_rotate_secret(destination=Destination.objects.get(pk=destination.pk))
    )
    stored = Destination.objects.get(pk=destination.pk)
    valid = stored.signing_secrets(now=timezone.now())
    assert len(answers) == 2
    assert {answer.signing_secret for answer in answers} <= set(valid)
    assert len(valid) == 2
    assert original not in valid
