"""An account's members: adding by email, roles, the last admin, who changed what."""

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from knox.models import AuthToken
from rest_framework.test import APIClient

from accounts.models import Account, AccountMember
from accounts.services import LAST_ADMIN, member_update
from server.tests.helpers import at_once

pytestmark = pytest.mark.django_db


def client_for(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {AuthToken.objects.create(user=user)[1]}")
    return client


@pytest.fixture
def owner(django_user_model):
    return django_user_model.objects.create_user(username="owner", email="owner@example.com")


@pytest.fixture
def account(owner) -> Account:
    """An account created through the API by `owner`, who thereby is its admin."""
    response = client_for(owner).post("/api/accounts/", {"email": "shop@example.com", "account_name": "Shop"})
    assert response.status_code == 201
    return Account.objects.get(account_id=response.json()["account_id"])


def members_url(account: Account, user_id: int | None = None) -> str:
    base = f"/api/accounts/{account.account_id}/members/"
    return base if user_id is None else f"{base}{user_id}/"


def test_the_creator_of_an_account_is_its_admin_and_recorded_as_creator(owner, account):
    """POST /api/accounts/ by a plain user makes it the admin; created_by and updated_by name it."""
    assert list(account.members.values_list("user__username", "role")) == [("owner", "admin")]
    assert (account.created_by, account.updated_by) == (owner, owner)


def test_adding_an_unknown_email_creates_the_user_and_shows_its_password_once(owner, account):
    """The answer alone carries a one-time password, which signs the new user in; the list never shows it."""
    response = client_for(owner).post(members_url(account), {"email": "New@Example.com", "role": "member"})
    assert response.status_code == 201
    body = response.json()
    user = get_user_model().objects.get(
        email="New@example.com"
    )  # the domain in lower case, as Django stores it
    assert body == {
        "user_id": user.pk,
        "email": "New@example.com",
        "role": "member",
        "created_at": body["created_at"],
        "password": body["password"],
    }
    signed_in = APIClient().post(
        "/api/auth/token/", {"username": "new@example.com", "password": body["password"]}
    )
    assert signed_in.status_code == 200
    listed = client_for(owner).get(members_url(account)).json()
    assert [set(member) for member in listed] == [{"user_id", "email", "role", "created_at"}] * 2
    member = AccountMember.objects.get(user=user)
    assert (member.created_by, member.updated_by) == (owner, owner)


def test_adding_an_existing_user_makes_no_password(owner, account, django_user_model):
    """A user who exists (matched by email, any case) is added as is: no password in the answer."""
    existing = django_user_model.objects.create_user(username="bob", email="bob@example.com")
    response = client_for(owner).post(members_url(account), {"email": "BOB@example.com", "role": "admin"})
    assert response.status_code == 201
    assert "password" not in response.json()
    assert response.json()["user_id"] == existing.pk
    assert AccountMember.objects.get(user=existing).role == "admin"


def test_adding_a_member_twice_is_400(owner, account):
    """A user already on the account is a 400 on `email`; nothing changes."""
    client = client_for(owner)
    client.post(members_url(account), {"email": "bob@example.com", "role": "member"})
    response = client.post(members_url(account), {"email": "bob@example.com", "role": "admin"})
    assert (response.status_code, response.json()) == (
        400,
        {"email": ["This user is already a member of this account."]},
    )
    assert AccountMember.objects.get(user__email="bob@example.com").role == "member"


@pytest.mark.parametrize(("method", "body"), [("patch", {"role": "member"}), ("delete", None)])
def test_the_last_admin_cannot_be_demoted_or_removed(owner, account, method, body):
    """400 with the reason; the admin stays."""
    response = getattr(client_for(owner), method)(members_url(account, owner.pk), body, format="json")
    assert (response.status_code, response.json()) == (
        400,
        {"role": ["An account keeps at least one admin: make another member admin first."]},
    )
    assert list(account.members.values_list("user_id", "role")) == [(owner.pk, "admin")]


def test_an_admin_with_another_admin_beside_it_may_step_down(owner, account):
    """With a second admin, the first may become a member; updated_by records who did it."""
    client = client_for(owner)
    client.post(members_url(account), {"email": "bob@example.com", "role": "admin"})
    response = client.patch(members_url(account, owner.pk), {"role": "member"}, format="json")
    assert response.status_code == 200
    assert response.json()["role"] == "member"
    member = AccountMember.objects.get(user=owner)
    assert (member.role, member.updated_by) == ("member", owner)


def test_an_unknown_member_is_404(owner, account):
    """A user id that is not on the account (or not a number) is 404."""
    client = client_for(owner)
    assert client.patch(members_url(account, 999999), {"role": "admin"}, format="json").status_code == 404
    assert client.delete(f"{members_url(account)}abc/").status_code == 404
    for bad_account in ("not-a-uuid", "123", "00000000-0000-0000-0000-000000000000"):
        assert client.get(f"/api/accounts/{bad_account}/members/").status_code == 404


@pytest.mark.django_db(transaction=True)
def test_two_admins_demoting_each_other_at_once_leave_one_admin(django_user_model):
    """Each sees the other still admin when it starts; the account's row lock lets only one win."""
    account = Account.objects.create(email="race@example.com", account_name="Race")
    first, second = (
        AccountMember.objects.create(
            account=account, user=django_user_model.objects.create_user(username=name), role="admin"
        )
        for name in ("first", "second")
    )

    def demote(member):
        # Each thread holds the member as read before either started (in-process SQLite test
        # databases share a cache, where a read beside another connection's write is refused).
        def call():
            try:
                member_update(member=member, role="member")
                return "demoted"
            except ValidationError as err:
                return err.message_dict

        return call

    calls = iter([demote(first), demote(second)])
    results = at_once(lambda: next(calls)())
    assert sorted(results, key=str) == ["demoted", {"role": [LAST_ADMIN]}]
    assert account.members.filter(role="admin").count() == 1


def test_changing_a_member_reads_the_role_once(owner, account, django_user_model):
    """The account's check and the member's check share one role query (the account is the same)."""
    bob = django_user_model.objects.create_user(username="bob", email="bob@example.com")
    AccountMember.objects.create(account=account, user=bob, role="member")
    member_owner = django_user_model.objects.create_user(username="carol")
    AccountMember.objects.create(account=account, user=member_owner, role="admin")
    client = client_for(member_owner)
    with CaptureQueriesContext(connection) as queries:
        assert client.patch(members_url(account, bob.pk), {"role": "admin"}, format="json").status_code == 200
    role_reads = [
        q["sql"] for q in queries.captured_queries if 'SELECT "accounts_accountmember"."role"' in q["sql"]
    ]
    assert len(role_reads) == 1
