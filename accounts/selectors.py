"""Who may see what: every read of accounts and what hangs under them is scoped to the user here."""

import uuid

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet

from accounts.models import Account, AccountMember

ADMIN = AccountMember.Role.ADMIN


def user_sees_everything(*, user: AbstractBaseUser) -> bool:
    """Staff users and superusers see and manage every account."""
    return bool(user.is_staff or user.is_superuser)


def scoped[Q: QuerySet](
    queryset: Q, *, user: AbstractBaseUser, account_path: str = "account_id", role: str | None = None
) -> Q:
    """`queryset` narrowed to the rows of the accounts `user` is a member of (with `role`, when
    given) — unnarrowed for staff; `account_path` leads from a row to its account_id."""
    if user_sees_everything(user=user):
        return queryset
    memberships = AccountMember.objects.filter(user_id=user.pk)
    if role is not None:
        memberships = memberships.filter(role=role)
    return queryset.filter(**{f"{account_path}__in": memberships.values("account_id")})


def account_list(*, user: AbstractBaseUser) -> QuerySet[Account]:
    """The accounts `user` is a member of (every account for staff)."""
    return scoped(Account.objects.all(), user=user)


def account_administered_list(*, user: AbstractBaseUser) -> QuerySet[Account]:
    """The accounts `user` is an admin of (every account for staff)."""
    return scoped(Account.objects.all(), user=user, role=ADMIN)


def account_role(*, user: AbstractBaseUser, account_id: uuid.UUID) -> str | None:
    """`admin` or `member` on the account (`admin` for staff), or None when not a member."""
    if user_sees_everything(user=user):
        return ADMIN
    return (
        AccountMember.objects.filter(account_id=account_id, user_id=user.pk)
        .values_list("role", flat=True)
        .first()
    )


def member_list(*, account: Account) -> QuerySet[AccountMember]:
    """The account's members, oldest first, with their users."""
    return account.members.select_related("user")


def membership_list(*, user: AbstractBaseUser) -> QuerySet[AccountMember]:
    """The user's own memberships, with their accounts."""
    return AccountMember.objects.filter(user_id=user.pk).select_related("account")
