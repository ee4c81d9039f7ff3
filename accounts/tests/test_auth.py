"""Signing in, out and who am I: API tokens for people (django-rest-knox)."""

from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from knox.models import AuthToken
from rest_framework.test import APIClient

from accounts.models import AccountMember
from accounts.tests.factories import AccountFactory

pytestmark = pytest.mark.django_db

SIGN_IN = "/api/auth/token/"
HOURLY = override_settings(
    DATAPUSHER_SIGN_IN_FAILURES_PER_USERNAME="5/hour", DATAPUSHER_SIGN_IN_FAILURES_PER_ADDRESS="20/hour"
)
WRONG = {"non_field_errors": ["Unable to sign in with these credentials."]}


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user(
        username="alice", email="Alice@example.com", password="s3cret-pass"
    )


def signed_in(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


@pytest.mark.parametrize("login", ["alice", "alice@example.com"])
def test_sign_in_with_username_or_email_answers_a_token_that_expires_in_30_days(alice, login):
    """The answer is {token, expiry}; the token signs API requests in as that user."""
    response = APIClient().post(SIGN_IN, {"username": login, "password": "s3cret-pass"}, format="json")
    assert response.status_code == 200
    assert set(response.json()) == {"token", "expiry"}
    expiry = parse_datetime(response.json()["expiry"])
    assert abs(expiry - (timezone.now() + timedelta(days=30))) < timedelta(minutes=1)
    me = signed_in(response.json()["token"]).get("/api/auth/me/")
    assert me.status_code == 200
    assert me.json()["username"] == "alice"


@override_settings(REST_KNOX={"TOKEN_TTL": timedelta(days=2), "AUTH_HEADER_PREFIX": "Token"})
def test_token_lifetime_follows_the_setting(alice):
    """REST_KNOX's TOKEN_TTL (DATAPUSHER_USER_TOKEN_DAYS) sets when a person's token expires."""
    response = APIClient().post(SIGN_IN, {"username": "alice", "password": "s3cret-pass"}, format="json")
    expiry = parse_datetime(response.json()["expiry"])
    assert abs(expiry - (timezone.now() + timedelta(days=2))) < timedelta(minutes=1)


@pytest.mark.parametrize(
    "credentials",
    [
        {"username": "alice", "password": "wrong"},
        {"username": "nobody", "password": "s3cret-pass"},
        {"username": "nobody@example.com", "password": "s3cret-pass"},
    ],
)
def test_wrong_credentials_are_400_without_saying_which_part(alice, credentials):
    """A wrong password and an unknown user get the same answer; no token is made."""
    response = APIClient().post(SIGN_IN, credentials, format="json")
    assert (response.status_code, response.json()) == (400, WRONG)
    assert AuthToken.objects.count() == 0


def test_an_inactive_user_cannot_sign_in(alice):
    """A deactivated user's right password is refused like a wrong one."""
    alice.is_active = False
    alice.save()
    response = APIClient().post(SIGN_IN, {"username": "alice", "password": "s3cret-pass"}, format="json")
    assert (response.status_code, response.json()) == (400, WRONG)


@HOURLY  # windows of an hour: a minute's could end in the middle of the test
def test_failed_sign_ins_are_limited_per_username(alice):
    """After 5 failures for a username, from any address, even the right password gets 429 + Retry-After."""
    for n in range(5):
        response = APIClient().post(
            SIGN_IN, {"username": "alice", "password": "wrong"}, format="json", REMOTE_ADDR=f"10.0.0.{n}"
        )
        assert response.status_code == 400
    response = APIClient().post(
        SIGN_IN, {"username": "ALICE", "password": "s3cret-pass"}, format="json", REMOTE_ADDR="10.0.0.99"
    )
    assert response.status_code == 429
    assert 1 <= int(response["Retry-After"]) <= 3600
    assert AuthToken.objects.count() == 0
    other = APIClient().post(
        SIGN_IN, {"username": "bob", "password": "x"}, format="json", REMOTE_ADDR="10.0.0.99"
    )
    assert other.status_code == 400  # another username from the same address is still heard


@HOURLY  # windows of an hour: a minute's could end in the middle of the test
def test_failed_sign_ins_are_limited_per_client_address(alice):
    """After 20 failures from one address, for any usernames, that address gets 429; others do not."""
    for n in range(20):
        response = APIClient().post(
            SIGN_IN, {"username": f"user{n}", "password": "wrong"}, format="json", REMOTE_ADDR="10.0.0.7"
        )
        assert response.status_code == 400
    refused = APIClient().post(
        SIGN_IN, {"username": "alice", "password": "s3cret-pass"}, format="json", REMOTE_ADDR="10.0.0.7"
    )
    assert refused.status_code == 429
    assert int(refused["Retry-After"]) >= 1
    elsewhere = APIClient().post(
        SIGN_IN, {"username": "alice", "password": "s3cret-pass"}, format="json", REMOTE_ADDR="10.0.0.8"
    )
    assert elsewhere.status_code == 200


def test_successful_sign_ins_are_not_limited(alice):
    """Only failures count: many good sign-ins in a row all get tokens."""
    for _ in range(8):
        assert (
            APIClient()
            .post(SIGN_IN, {"username": "alice", "password": "s3cret-pass"}, format="json")
            .status_code
            == 200
        )


@override_settings(DATAPUSHER_RATE_LIMIT_STORAGE="redis://127.0.0.1:1/0")
def test_a_storage_that_fails_does_not_stop_sign_in(alice, caplog):
    """With the counters' storage unreachable they are skipped (and the failure logged), not a 500."""
    response = APIClient().post(SIGN_IN, {"username": "alice", "password": "s3cret-pass"}, format="json")
    assert response.status_code == 200
    assert "rate limit sign-in:username not checked: the storage failed" in caplog.text


def test_logout_revokes_only_that_token(alice):
    """POST /api/auth/logout/ answers 204; that token is then refused, another one of the user still works."""
    first, second = (
        APIClient()
        .post(SIGN_IN, {"username": "alice", "password": "s3cret-pass"}, format="json")
        .json()["token"]
        for _ in range(2)
    )
    assert signed_in(first).post("/api/auth/logout/").status_code == 204
    assert signed_in(first).get("/api/auth/me/").status_code == 401
    assert signed_in(second).get("/api/auth/me/").status_code == 200


def test_an_expired_token_is_refused(alice):
    """A token past its expiry is 401."""
    instance, token = AuthToken.objects.create(user=alice)
    AuthToken.objects.filter(pk=instance.pk).update(expiry=timezone.now() - timedelta(seconds=1))
    assert signed_in(token).get("/api/auth/me/").status_code == 401


def test_me_lists_the_users_memberships(alice):
    """GET /api/auth/me/ shows the user and each account it is a member of, with the role."""
    account = AccountFactory(account_name="Shop")
    AccountMember.objects.create(account=account, user=alice, role="member")
    _, token = AuthToken.objects.create(user=alice)
    assert signed_in(token).get("/api/auth/me/").json() == {
        "id": alice.pk,
        "username": "alice",
        "email": "Alice@example.com",
        "is_staff": False,
        "memberships": [{"account_id": str(account.account_id), "account_name": "Shop", "role": "member"}],
    }
