"""Account websites with a backslash: refused like destination URLs."""

import pytest

from accounts.models import Account
from datapusher.validators import BACKSLASH_MESSAGE

pytestmark = pytest.mark.django_db


def test_website_with_a_backslash_is_400(api_client):
    """A website whose host parsers read differently is a 400 on the website field."""
    response = api_client.post(
        "/api/accounts/",
        {"email": "ops@example.com", "account_name": "Ops", "website": "http://evil.example\\@good.example/"},
        format="json",
    )
    assert response.status_code == 400
    assert response.json() == {"website": [BACKSLASH_MESSAGE]}
    assert Account.objects.count() == 0
