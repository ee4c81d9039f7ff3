"""Destination credentials in the API and the admin: validated per type, write-only, encrypted at rest."""

import io
import secrets

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command
from django.db import connection
from knox.models import AuthToken
from rest_framework.test import APIClient

from accounts.models import AccountMember
from accounts.tests.factories import AccountFactory
from destinations.models import Destination
from destinations.tests.factories import DestinationFactory

pytestmark = pytest.mark.django_db

LIST_URL = "/api/destinations/"
TOKEN_URL = "https://auth.example.com/oauth/token"


def create(client, account, auth=None, **fields):
    body = {"account": str(account.account_id), "url": "https://hooks.example.com/in", "http_method": "POST"}
    if auth is not None:
        body["auth"] = auth
    return client.post(LIST_URL, {**body, **fields}, format="json")


def stored_secret(destination_id) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT auth_secret FROM destinations_destination WHERE id = %s", [destination_id])
        return cursor.fetchone()[0]


@pytest.mark.parametrize(
    ("auth", "shown"),
    [
        ({"type": "none"}, {"type": "none"}),
        ({"type": "basic", "username": "ana", "password": "pw"}, {"type": "basic", "username": "ana"}),
        ({"type": "bearer", "token": "abc.DEF-123"}, {"type": "bearer"}),
        (
            {
                "type": "oauth2_client_credentials",
                "token_url": TOKEN_URL,
                "client_id": "cid",
                "client_secret": "cs",
            },
            {"type": "oauth2_client_credentials", "token_url": TOKEN_URL, "client_id": "cid"},
        ),
        (
            {
                "type": "oauth2_client_credentials",
                "token_url": TOKEN_URL,
                "client_id": "cid",
                "client_secret": "cs",
                "scope": "read write",
            },
            {
                "type": "oauth2_client_credentials",
                "token_url": TOKEN_URL,
                "client_id": "cid",
                "scope": "read write",
            },
        ),
    ],
)
def test_create_answers_the_auth_without_its_secret(api_client, auth, shown):
    """Each type is accepted with the fields it needs; the answer and later reads omit the secret."""
    response = create(api_client, AccountFactory(), auth)
    assert response.status_code == 201
    assert response.json()["auth"] == shown
    assert api_client.get(f"{LIST_URL}{response.json()['id']}/").json()["auth"] == shown


def test_auth_left_out_is_none(api_client):
    """A destination created without `auth` sends no credentials: type none."""
    response = create(api_client, AccountFactory())
    assert response.json()["auth"] == {"type": "none"}


@pytest.mark.parametrize(
    ("auth", "errors"),
    [
        ({"type": "basic", "username": "ana"}, {"password": ["This field is required."]}),
        ({"type": "basic", "password": "pw"}, {"username": ["This field is required."]}),
        ({"type": "bearer"}, {"token": ["This field is required."]}),
        (
            {"type": "oauth2_client_credentials", "client_secret": "cs"},
            {"token_url": ["This field is required."], "client_id": ["This field is required."]},
        ),
        ({"type": "bearer", "token": "t", "password": "pw"}, {"password": ["Not used with type bearer."]}),
        ({"type": "none", "username": "ana"}, {"username": ["Not used with type none."]}),
        (
            {"type": "basic", "username": "a:b", "password": "pw"},
            {"username": ["A user name without a colon or control characters."]},
        ),
        (
            {"type": "bearer", "token": "a b"},
            {"token": ["A bearer token: letters, digits and -._~+/ then any = (RFC 6750)."]},
        ),
        ({"type": "digest"}, {"type": ['"digest" is not a valid choice.']}),
        (
            {
                "type": "oauth2_client_credentials",
                "token_url": "https://id:pw@auth.example.com/token",
                "client_id": "c",
                "client_secret": "s",
            },
            {"token_url": ["A token URL without user:password@ (client_id and client_secret authenticate)."]},
        ),
        (
            {
                "type": "oauth2_client_credentials",
                "token_url": TOKEN_URL,
                "client_id": "c",
                "client_secret": "s",
                "scope": 'a "b"',
            },
            {"scope": ['Space-separated scopes of visible characters but " and \\ (RFC 6749).']},
        ),
        ({"type": "none", "realm": "x"}, {"realm": ["Unknown field."]}),
        (
            {
                "type": "oauth2_client_credentials",
                "token_url": "ftp://a.example.com/",
                "client_id": "c",
                "client_secret": "s",
            },
            {"token_url": ["Enter a valid URL."]},
        ),
    ],
)
def test_invalid_auth_is_400_naming_the_field(api_client, auth, errors):
    """Missing, extra and malformed fields of `auth` are each a 400 that names them."""
    response = create(api_client, AccountFactory(), auth)
    assert response.status_code == 400
    assert response.json() == {"auth": errors}


def test_token_url_on_an_internal_address_is_refused(api_client, settings):
    """The token URL passes the same SSRF guard as the destination URL when saved."""
    settings.DATAPUSHER_ALLOWED_NETWORKS = []
    auth = {
        "type": "oauth2_client_credentials",
        "token_url": "http://169.254.169.254/token",
        "client_id": "c",
        "client_secret": "s",
    }
    response = create(api_client, AccountFactory(), auth)
    assert response.status_code == 400
    assert list(response.json()["auth"]) == ["token_url"]
    assert "169.254.169.254" in response.json()["auth"]["token_url"][0]


def test_secret_is_stored_encrypted_and_decrypts_with_the_key(api_client):
    """The database holds the secret encrypted with the first key, never in clear."""
    password = secrets.token_urlsafe(16)
    response = create(
        api_client, AccountFactory(), {"type": "basic", "username": "ana", "password": password}
    )
    destination = Destination.objects.get(pk=response.json()["id"])
    stored = stored_secret(destination.pk)
    assert password not in stored
    assert password not in str(destination.auth)
    assert destination.credentials() == {"type": "basic", "username": "ana", "password": password}


def test_old_key_still_decrypts_after_rotation(settings):
    """A new key put first encrypts from then on; the old one, kept second, decrypts what it encrypted."""
    old = settings.DATAPUSHER_ENCRYPTION_KEYS[0]
    token = secrets.token_urlsafe(16)
    destination = DestinationFactory(auth={"type": "bearer", "token": token})
    settings.DATAPUSHER_ENCRYPTION_KEYS = [Fernet.generate_key().decode(), old]
    assert Destination.objects.get(pk=destination.pk).credentials()["token"] == token


def test_without_a_key_credentials_are_refused_with_400(api_client, settings):
    """With DATAPUSHER_ENCRYPTION_KEYS unset, a secret cannot be stored: 400, nothing saved."""
    settings.DATAPUSHER_ENCRYPTION_KEYS = []
    response = create(api_client, AccountFactory(), {"type": "bearer", "token": "abc"})
    assert response.status_code == 400
    assert response.json() == {
        "auth": ["Credentials cannot be stored: DATAPUSHER_ENCRYPTION_KEYS is not set."]
    }
    assert not Destination.objects.exists()


def test_without_a_key_type_none_is_still_accepted(api_client, settings):
    """Destinations without credentials need no key."""
    settings.DATAPUSHER_ENCRYPTION_KEYS = []
    assert create(api_client, AccountFactory(), {"type": "none"}).status_code == 201


def test_authorization_header_conflicts_with_auth(api_client):
    """An Authorization header (any case) beside auth other than none is a 400 on headers."""
    response = create(
        api_client,
        AccountFactory(),
        {"type": "bearer", "token": "abc"},
        headers={"authorization": "Bearer x"},
    )
    assert response.status_code == 400
    assert response.json() == {
        "headers": ["Authorization cannot be set here while auth is bearer: auth sets it."]
    }


def test_authorization_header_added_later_conflicts_with_stored_auth(api_client):
    """A PATCH of headers alone is checked against the auth already stored."""
    destination = DestinationFactory(auth={"type": "basic", "username": "u", "password": "p"})
    response = api_client.patch(
        f"{LIST_URL}{destination.pk}/", {"headers": {"Authorization": "Bearer x"}}, format="json"
    )
    assert response.status_code == 400
    assert response.json() == {
        "headers": ["Authorization cannot be set here while auth is basic: auth sets it."]
    }


def test_authorization_header_with_auth_none_is_kept(api_client):
    """Without auth, an Authorization header is the user's to set, as before."""
    response = create(api_client, AccountFactory(), {"type": "none"}, headers={"Authorization": "Bearer x"})
    assert response.status_code == 201
    assert response.json()["headers"] == {"Authorization": "Bearer x"}


def test_patch_without_auth_keeps_the_credentials(api_client):
    """Leaving `auth` out of an update keeps the stored credentials, secret included."""
    destination = DestinationFactory(auth={"type": "basic", "username": "u", "password": "pw"})
    response = api_client.patch(
        f"{LIST_URL}{destination.pk}/", {"url": "https://hooks.example.com/2"}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["auth"] == {"type": "basic", "username": "u"}
    assert Destination.objects.get(pk=destination.pk).credentials()["password"] == "pw"


def test_put_without_auth_keeps_the_credentials(api_client):
    """A PUT built from a read (which has no secret) and leaving `auth` out keeps the credentials."""
    destination = DestinationFactory(auth={"type": "bearer", "token": "t0k"})
    body = {
        "account": str(destination.account_id),
        "url": "https://hooks.example.com/3",
        "http_method": "PUT",
    }
    response = api_client.put(f"{LIST_URL}{destination.pk}/", body, format="json")
    assert (response.status_code, response.json()["auth"]) == (200, {"type": "bearer"})
    assert Destination.objects.get(pk=destination.pk).credentials()["token"] == "t0k"


def test_patch_with_auth_replaces_it(api_client):
    """An `auth` in an update replaces the stored one, secret and all."""
    destination = DestinationFactory(auth={"type": "basic", "username": "u", "password": "pw"})
    response = api_client.patch(
        f"{LIST_URL}{destination.pk}/", {"auth": {"type": "bearer", "token": "t0k"}}, format="json"
    )
    assert response.json()["auth"] == {"type": "bearer"}
    assert Destination.objects.get(pk=destination.pk).credentials() == {"type": "bearer", "token": "t0k"}


@pytest.mark.parametrize(
    ("role", "shown"), [("member", {"type": "basic"}), ("admin", {"type": "basic", "username": "u"})]
)
def test_members_see_the_auth_type_only(django_user_model, role, shown):
    """A member reads the type alone; an account admin the readable fields too."""
    account = AccountFactory()
    user = django_user_model.objects.create_user(username=role)
    AccountMember.objects.create(account=account, user=user, role=role)
    destination = DestinationFactory(
        account=account, auth={"type": "basic", "username": "u", "password": "pw"}
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {AuthToken.objects.create(user=user)[1]}")
    assert client.get(f"{LIST_URL}{destination.pk}/").json()["auth"] == shown
    assert client.get(LIST_URL).json()["results"][0]["auth"] == shown


def test_admin_shows_the_auth_with_its_secret_masked(admin_client):
    """The admin's change page shows the type and user name, and the password as ********."""
    password = secrets.token_urlsafe(16)
    destination = DestinationFactory(auth={"type": "basic", "username": "ana", "password": password})
    page = admin_client.get(f"/admin/destinations/destination/{destination.pk}/change/").content.decode()
    assert "type: basic, username: ana, password: ********" in page
    assert password not in page


def test_reencrypt_credentials_moves_them_to_the_first_key(settings):
    """After a new key is put first, reencrypt_credentials lets the old key be removed."""
    old = settings.DATAPUSHER_ENCRYPTION_KEYS[0]
    password = secrets.token_urlsafe(16)
    destination = DestinationFactory(auth={"type": "basic", "username": "u", "password": password})
    new = Fernet.generate_key().decode()
    settings.DATAPUSHER_ENCRYPTION_KEYS = [new, old]
    out = io.StringIO()
    call_command("reencrypt_credentials", stdout=out)
    assert out.getvalue() == "Encrypted the credentials of 1 destinations with the first key.\n"
    settings.DATAPUSHER_ENCRYPTION_KEYS = [new]
    assert Destination.objects.get(pk=destination.pk).credentials()["password"] == password


def test_reencrypt_credentials_names_those_no_key_decrypts(settings):
    """Credentials no key decrypts are left as they are, and the command fails naming them."""
    destination = DestinationFactory(auth={"type": "bearer", "token": "t"})
    settings.DATAPUSHER_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(CommandError) as raised:
        call_command("reencrypt_credentials", stdout=io.StringIO())
    assert str(raised.value) == (
        f"No key decrypts the credentials of destinations {destination.pk}; left as they are."
    )
