"""Who may see what: every read of accounts and what hangs under them is scoped to the user here."""

import uuid

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet

from accounts.models import Account, AccountMember

ADMIN = AccountMember.Role.ADMIN


def user_sees_everything(*, user: AbstractBaseUser) -> bool:
    """Staff users and superusers see and manage every account."""
    return bool(user.is_staff or user.is_superuser)


def account_ids_visible(*, user: AbstractBaseUser) -> QuerySet[AccountMember] | None:
    """A subquery of the account ids `user` is a member of, or None when the user sees every account;
    selectors of rows under an account filter `<path to account_id>__in` with it."""
    if user_sees_everything(user=user):
        return None
    return AccountMember.objects.filter(user_id=user.pk).values("account_id")


def scoped[Q: QuerySet](queryset: Q, *, user: AbstractBaseUser, account_path: str = "account_id") -> Q:
    """`queryset` narrowed to the rows of the accounts `user` may see."""
    visible = account_ids_visible(user=user)
    return queryset if visible is None else queryset.filter(**{f"{account_path}__in": visible})


def account_list(*, user: AbstractBaseUser) -> QuerySet[Account]:
    """The accounts `user` is a member of (every account for staff)."""
    return scoped(Account.objects.all(), user=user)


def account_administered_list(*, user: AbstractBaseUser) -> QuerySet[Account]:
    """The accounts `user` is an admin of (every account for staff)."""
    if user_sees_everything(user=user):
        return Account.objects.all()
    return Account.objects.filter(
        account_id__in=AccountMember.objects.filter(user_id=user.pk, role=ADMIN).values("account_id")
    )


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
