import secrets
from collections.abc import Mapping
from typing import Any

from django.contrib.auth import authenticate, get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q
from knox.models import AuthToken

from accounts.models import Account, AccountMember
from datapusher.services import model_update

ACCOUNT_EDITABLE_FIELDS = ("email", "account_name", "website", "rate_limit")
ADMIN = AccountMember.Role.ADMIN

EMAIL_TAKEN = "An account with this email already exists."
ALREADY_MEMBER = "This user is already a member of this account."
SEVERAL_USERS = "Several users have this email; ask an operator to add the right one."
LAST_ADMIN = "An account keeps at least one admin: make another member admin first."

type User = AbstractBaseUser


def _account_save(*, account: Account, update_fields: list[str] | None = None) -> Account:
    """Save (only `update_fields` when given), turning a lost race on the case-insensitive email
    constraint into a field error."""
    try:
        with transaction.atomic():
            account.save(update_fields=update_fields)
    except IntegrityError as err:
        raise ValidationError({"email": [EMAIL_TAKEN]}) from err
    return account


@transaction.atomic
def account_create(
    *,
    email: str,
    account_name: str,
    website: str = "",
    rate_limit: str | None = None,
    by: User | None = None,
) -> Account:
    """Create an account with a fresh app secret token; `by`, when given, becomes its admin.
    Raises ValidationError if the email is taken."""
    account = Account(
        email=email,
        account_name=account_name,
        website=website,
        rate_limit=rate_limit,
        created_by=by,
        updated_by=by,
    )
    account.new_app_secret_token()
    _account_save(account=account)
    if by is not None:
        AccountMember.objects.create(account=account, user=by, role=ADMIN, created_by=by, updated_by=by)
    return account


def account_update(*, account: Account, data: Mapping[str, Any], by: User | None = None) -> Account:
    """Update the editable fields present in `data`. Raises ValidationError if the email is taken."""
    return model_update(
        instance=account,
        fields=ACCOUNT_EDITABLE_FIELDS,
        data=data,
        by=by,
        save=lambda update_fields: _account_save(account=account, update_fields=update_fields),
    )


def account_rotate_token(*, account: Account, by: User | None = None) -> Account:
    """Give the account a new app secret token, on `account.app_secret_token` (to be shown once);
    the old one stops working at once."""
    account.new_app_secret_token()
    account.updated_by = by
    account.save(
        update_fields=["app_secret_token_hash", "app_secret_token_prefix", "updated_at", "updated_by"]
    )
    return account


def account_delete(*, account: Account) -> None:
    """Delete the account; the database cascades to its destinations and members."""
    account.delete()


def member_add(
    *, account: Account, email: str, role: str, by: User | None = None
) -> tuple[AccountMember, str | None]:
    """Make the user with this email (or username) a member of the account with `role`, creating
    the user if there is none. Returns the member and, for a user created here, its one-time
    password (else None). Raises ValidationError if the user is already a member or the email is
    ambiguous."""
    users = list(get_user_model().objects.filter(Q(email__iexact=email) | Q(username__iexact=email))[:2])
    if len(users) > 1:
        raise ValidationError({"email": [SEVERAL_USERS]})
    password = None
    try:
        with transaction.atomic():
            if users:
                [user] = users
            else:
                password = secrets.token_urlsafe(12)
                user = get_user_model().objects.create_user(username=email, email=email, password=password)
            member = AccountMember.objects.create(
                account=account, user=user, role=role, created_by=by, updated_by=by
            )
    except IntegrityError as err:
        raise ValidationError({"email": [ALREADY_MEMBER]}) from err
    return member, password


@transaction.atomic
def member_update(*, member: AccountMember, role: str, by: User | None = None) -> AccountMember:
    """Give the member `role`. Raises ValidationError if that would leave the account no admin."""
    if role != ADMIN:
        _keep_an_admin(member=member)
    return model_update(
        instance=member,
        fields=("role",),
        data={"role": role},
        by=by,
        save=lambda update_fields: member.save(update_fields=update_fields),
    )


@transaction.atomic
def member_remove(*, member: AccountMember) -> None:
    """Take the member off the account. Raises ValidationError if it is the account's last admin."""
    _keep_an_admin(member=member)
    member.delete()


def _keep_an_admin(*, member: AccountMember) -> None:
    """Raise ValidationError if `member` is, as stored now, the account's only admin. Holds the
    account's row lock until the caller's transaction ends, so that two admins cannot demote or
    remove each other at once."""
    Account.objects.select_for_update().filter(account_id=member.account_id).values_list("pk").first()
    admins = AccountMember.objects.filter(account_id=member.account_id, role=ADMIN)
    if set(admins.values_list("pk", flat=True)) == {member.pk}:
        raise ValidationError({"role": [LAST_ADMIN]})


def user_authenticate(*, request: Any, username: str, password: str) -> User | None:
    """The active user whose username, or else whose email (if no other user has it), and password
    these are; None otherwise."""
    user = authenticate(request, username=username, password=password)
    if user is None and "@" in username:
        matches = list(get_user_model().objects.filter(email__iexact=username)[:2])
        if len(matches) == 1:
            user = authenticate(request, username=matches[0].get_username(), password=password)
    return user


@transaction.atomic
def api_token_for_user(*, username: str) -> tuple[str, bool]:
    """Return (a new API token that does not expire, whether the staff user was created); creates
    the user if missing. Tokens are stored hashed, so each call makes a new one."""
    user, created = get_user_model().objects.get_or_create(username=username, defaults={"is_staff": True})
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    _, token = AuthToken.objects.create(user=user, expiry=None)
    return token, created


@transaction.atomic
def admin_bootstrap(*, username: str) -> tuple[str, str] | None:
    """Create the first superuser with a random password and an API token that does not expire.

    Returns (password, token), or None when the user already exists (nothing is changed).
    """
    user_model = get_user_model()
    if user_model.objects.filter(username=username).exists():
        return None
    password = secrets.token_urlsafe(18)
    user = user_model.objects.create_superuser(username=username, email="", password=password)
    _, token = AuthToken.objects.create(user=user, expiry=None)
    return password, token
