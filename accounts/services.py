import secrets
from collections.abc import Mapping
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from rest_framework.authtoken.models import Token

from accounts.models import Account
from accounts.tokens import generate_app_secret_token
from datapusher.services import model_update

ACCOUNT_EDITABLE_FIELDS = ("email", "account_name", "website")

EMAIL_TAKEN = "An account with this email already exists."


def _account_save(*, account: Account, update_fields: list[str] | None = None) -> Account:
    """Save (only `update_fields` when given), turning a lost race on the case-insensitive email
    constraint into a field error."""
    try:
        with transaction.atomic():
            account.save(update_fields=update_fields)
    except IntegrityError as err:
        raise ValidationError({"email": [EMAIL_TAKEN]}) from err
    return account


def account_create(*, email: str, account_name: str, website: str = "") -> Account:
    """Create an account with a fresh app secret token. Raises ValidationError if the email is taken."""
    return _account_save(account=Account(email=email, account_name=account_name, website=website))


def account_update(*, account: Account, data: Mapping[str, Any]) -> Account:
    """Update the editable fields present in `data`. Raises ValidationError if the email is taken."""
    return model_update(
        instance=account,
        fields=ACCOUNT_EDITABLE_FIELDS,
        data=data,
        save=lambda update_fields: _account_save(account=account, update_fields=update_fields),
    )


def account_rotate_token(*, account: Account) -> Account:
    """Give the account a new app secret token; the old one stops working at once."""
    account.app_secret_token = generate_app_secret_token()
    account.save(update_fields=["app_secret_token", "updated_at"])
    return account


def account_delete(*, account: Account) -> None:
    """Delete the account; the database cascades to its destinations."""
    account.delete()


@transaction.atomic
def api_token_for_user(*, username: str) -> tuple[str, bool]:
    """Return (API token key, whether the staff user was created); creates the user if missing."""
    user, created = get_user_model().objects.get_or_create(username=username, defaults={"is_staff": True})
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    token, _ = Token.objects.get_or_create(user=user)
    return token.key, created


@transaction.atomic
def admin_bootstrap(*, username: str) -> tuple[str, str] | None:
    """Create the first superuser with a random password and an API token.

    Returns (password, token key), or None when the user already exists (nothing is changed).
    """
    user_model = get_user_model()
    if user_model.objects.filter(username=username).exists():
        return None
    password = secrets.token_urlsafe(18)
    user = user_model.objects.create_superuser(username=username, email="", password=password)
    return password, Token.objects.create(user=user).key
