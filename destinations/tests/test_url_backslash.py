"""Destination URLs with a backslash: refused, since parsers disagree on which host they name."""

import pytest
from django.core.exceptions import ValidationError

from accounts.tests.factories import AccountFactory
from datapusher.validators import BACKSLASH_MESSAGE
from destinations.models import Destination
from destinations.services import destination_create
from destinations.tests.factories import DestinationFactory

pytestmark = pytest.mark.django_db

LIST_URL = "/api/destinations/"


def create(api_client, url: str):
    account = AccountFactory()
    payload = {"account": str(account.account_id), "url": url, "http_method": "POST", "headers": {}}
    return api_client.post(LIST_URL, payload, format="json")


@pytest.mark.parametrize(
    "url",
    [
        "http://evil.example\\@good.example/",
        "https://hooks.example.com\\/in",
        "https://hooks.example.com/in\\x",
        "https://hooks.example.com/in?q=\\",
    ],
)
def test_create_with_a_backslash_is_400(api_client, url):
    """Any backslash in a destination URL is a 400 naming the problem; nothing is stored."""
    response = create(api_client, url)
    assert response.status_code == 400
    assert response.json() == {"url": [BACKSLASH_MESSAGE]}
    assert Destination.objects.count() == 0


def test_backslash_hiding_an_internal_address_is_refused_for_both_reasons(api_client):
    """The host the request would go to (urllib3's reading: 169.254.169.254) is checked, not good.example."""
    response = create(api_client, "http://169.254.169.254\\@good.example/")
    assert response.status_code == 400
    assert response.json() == {"url": [BACKSLASH_MESSAGE, "destination address not allowed: 169.254.169.254"]}
    assert Destination.objects.count() == 0


def test_percent_encoded_backslash_is_accepted(api_client):
    """%5C, as the message advises, is an ordinary URL."""
    response = create(api_client, "https://hooks.example.com/in%5Cx")
    assert response.status_code == 201
    assert Destination.objects.get().url == "https://hooks.example.com/in%5Cx"


def test_patch_to_a_backslash_url_is_400(api_client):
    """An update cannot introduce a backslash either; the stored URL is unchanged."""
    destination = DestinationFactory(url="https://hooks.example.com/in")
    response = api_client.patch(
        f"{LIST_URL}{destination.pk}/", {"url": "http://evil.example\\@good.example/"}, format="json"
    )
    assert response.status_code == 400
    assert response.json() == {"url": [BACKSLASH_MESSAGE]}
    destination.refresh_from_db()
    assert destination.url == "https://hooks.example.com/in"


def test_service_refuses_a_backslash_url():
    """The model's validation (admin, services) refuses it too, not only the API serializer."""
    with pytest.raises(ValidationError) as excinfo:
        destination_create(
            account=AccountFactory(),
            url="http://evil.example\\@good.example/",
            http_method="POST",
            headers={},
        )
    assert excinfo.value.message_dict == {"url": [BACKSLASH_MESSAGE]}
