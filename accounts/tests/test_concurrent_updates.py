"""An account PATCH racing another write: each writes only its own fields."""

import pytest

from accounts import services
from accounts.models import Account
from accounts.services import account_create, account_rotate_token
from accounts.tests.factories import AccountFactory
from accounts.tokens import app_secret_token_hash

pytestmark = pytest.mark.django_db


def detail_url(account) -> str:
    return f"/api/accounts/{account.account_id}/"


def test_patch_racing_a_token_rotation_keeps_the_rotated_token(api_client, before_update):
    """A rotation that lands while a PATCH is in flight is not undone by the PATCH's save."""
    account = AccountFactory(account_name="Before")
    rotated = []
    before_update(
        services,
        lambda: rotated.append(
            account_rotate_token(account=Account.objects.get(pk=account.pk)).app_secret_token
        ),
    )

    response = api_client.patch(detail_url(account), {"account_name": "After"}, format="json")

    assert response.status_code == 200
    stored = Account.objects.get(pk=account.pk)
    assert len(rotated) == 1
    assert rotated[0] != account.app_secret_token
    assert (stored.account_name, stored.app_secret_token_hash) == ("After", app_secret_token_hash(rotated[0]))
    assert response.json()["app_secret_token_prefix"] == rotated[0][:8]  # the answer shows the row as it is


def test_patch_racing_another_field_update_keeps_that_update(api_client, before_update):
    """A PATCH of the name does not write back a website another request changed meanwhile."""
    account = AccountFactory(account_name="Before", website="https://old.example.com")
    before_update(
        services, lambda: Account.objects.filter(pk=account.pk).update(website="https://new.example.com")
    )

    response = api_client.patch(detail_url(account), {"account_name": "After"}, format="json")

    assert response.status_code == 200
    stored = Account.objects.get(pk=account.pk)
    assert (stored.account_name, stored.website) == ("After", "https://new.example.com")


def test_patch_losing_the_email_race_is_400(api_client, before_update):
    """An email taken by another account after validation is still a field error, not a 500."""
    account = AccountFactory(email="old@example.com")
    before_update(services, lambda: account_create(email="taken@example.com", account_name="Other"))

    response = api_client.patch(detail_url(account), {"email": "TAKEN@example.com"}, format="json")

    assert response.status_code == 400
    assert response.json() == {"email": ["An account with this email already exists."]}
    assert Account.objects.get(pk=account.pk).email == "old@example.com"


def test_patch_racing_a_delete_is_404(api_client, before_update):
    """The account is deleted while a PATCH is in flight: 404, not a 500, and nothing is re-created."""
    account = AccountFactory()
    before_update(services, lambda: Account.objects.filter(pk=account.pk).delete())

    response = api_client.patch(detail_url(account), {"account_name": "After"}, format="json")

    assert (response.status_code, response.json()) == (404, {"detail": "Not found."})
    assert not Account.objects.filter(pk=account.pk).exists()
