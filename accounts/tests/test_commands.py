import io
import re

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from knox.models import AuthToken
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


def run(*args) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_create_api_token_creates_staff_user_and_prints_only_the_key():
    """stdout is the bare key (scripts capture it); the new user is staff with no usable password."""
    out, err = run("create_api_token", "ci-bot")
    key = out.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", key)
    assert out == f"{key}\n"
    assert err == "Created staff user 'ci-bot'.\n"
    user = get_user_model().objects.get(username="ci-bot")
    assert user.is_staff and not user.has_usable_password()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.get("/api/accounts/").status_code == 200


def test_create_api_token_again_makes_a_second_token_for_the_same_user():
    """Tokens are stored hashed, so a second run prints a new one; both work and never expire."""
    first, _ = run("create_api_token", "ci-bot")
    second, err = run("create_api_token", "ci-bot")
    assert first != second
    assert err == ""
    assert get_user_model().objects.filter(username="ci-bot").count() == 1
    assert list(AuthToken.objects.values_list("expiry", flat=True)) == [None, None]
    for key in (first.strip(), second.strip()):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
        assert client.get("/api/accounts/").status_code == 200


def test_bootstrap_admin_prints_credentials_once_and_never_changes_them(client):
    """First run creates a superuser with a random password and token; later runs change nothing."""
    first, _ = run("bootstrap_admin")
    password = re.search(r"password:\s+(\S+)", first).group(1)
    token = re.search(r"API token:\s+(\S+)", first).group(1)
    second, _ = run("bootstrap_admin")
    assert password not in second and token not in second
    assert second == "Admin user 'admin' already exists; credentials unchanged.\n"
    assert client.login(username="admin", password=password)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert api.get("/api/accounts/").status_code == 200
    assert get_user_model().objects.get(username="admin").is_superuser
