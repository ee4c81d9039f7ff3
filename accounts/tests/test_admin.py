import re

import pytest

from accounts.models import Account
from accounts.tests.factories import AccountFactory
from destinations.models import Destination
from destinations.tests.factories import DestinationFactory

pytestmark = pytest.mark.django_db


def test_account_search_by_email_and_name(admin_client):
    """The account list searches email and name."""
    AccountFactory(email="findme@example.com", account_name="Alpha")
    AccountFactory(email="other@example.com", account_name="Findable Beta")
    AccountFactory(email="nobody@example.com", account_name="Gamma")
    by_email = admin_client.get("/admin/accounts/account/", {"q": "findme"})
    by_name = admin_client.get("/admin/accounts/account/", {"q": "findable"})
    assert by_email.context["cl"].result_count == 1
    assert by_name.context["cl"].result_count == 1


def test_account_page_shows_only_the_token_prefix_and_destinations_inline(admin_client):
    """The change page shows the token's first 8 characters as text, never the token; destinations inline."""
    destination = DestinationFactory(url="https://inline.example.com/hook")
    account = destination.account
    response = admin_client.get(f"/admin/accounts/account/{account.account_id}/change/")
    html = response.content.decode()
    assert response.status_code == 200
    assert account.app_secret_token[:8] in html
    assert account.app_secret_token not in html
    assert 'name="app_secret_token' not in html
    assert "https://inline.example.com/hook" in html


def test_admin_creates_account_with_generated_token_shown_once(admin_client, client):
    """Adding an account in the admin generates its token and shows it in that confirmation only;
    it works at the ingest."""
    response = admin_client.post(
        "/admin/accounts/account/add/",
        {
            "email": "admin-made@example.com",
            "account_name": "Admin Made",
            "website": "",
            "destinations-TOTAL_FORMS": "0",
            "destinations-INITIAL_FORMS": "0",
            "members-TOTAL_FORMS": "0",
            "members-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302
    shown = admin_client.get(response.url).content.decode()
    token = re.search(r"The app secret token of Admin Made is ([A-Za-z0-9_-]{43})", shown).group(1)
    account = Account.objects.get(email="admin-made@example.com")
    assert account.app_secret_token_prefix == token[:8]
    assert token not in admin_client.get(response.url).content.decode()
    assert (
        client.post(
            "/server/incoming_data", {}, content_type="application/json", headers={"CL-X-TOKEN": token}
        ).status_code
        == 200
    )


def test_admin_rejects_header_injection(admin_client):
    """The admin form validates headers like the API does."""
    account = AccountFactory()
    response = admin_client.post(
        "/admin/destinations/destination/add/",
        {
            "account": str(account.account_id),
            "url": "https://hooks.example.com/",
            "http_method": "POST",
            "headers": '{"X-A": "1\\r\\nX-B: 2"}',
        },
    )
    assert response.status_code == 200
    assert "contains characters not allowed in a header" in response.content.decode()
    assert Destination.objects.count() == 0


def test_destination_search_by_url(admin_client):
    """The destination list searches URLs."""
    DestinationFactory(url="https://needle.example.com/")
    DestinationFactory(url="https://hay.example.com/")
    response = admin_client.get("/admin/destinations/destination/", {"q": "needle"})
    assert response.context["cl"].result_count == 1


def test_admin_adds_members_inline_and_records_who_made_what(admin_client, admin_user, django_user_model):
    """An account added with a member inline: both rows name the admin user as creator and last editor."""
    ana = django_user_model.objects.create_user(username="ana", email="ana@example.com")
    response = admin_client.post(
        "/admin/accounts/account/add/",
        {
            "email": "team@example.com",
            "account_name": "Team",
            "website": "",
            "destinations-TOTAL_FORMS": "0",
            "destinations-INITIAL_FORMS": "0",
            "members-TOTAL_FORMS": "1",
            "members-INITIAL_FORMS": "0",
            "members-0-user": str(ana.pk),
            "members-0-role": "member",
        },
    )
    assert response.status_code == 302
    account = Account.objects.get(email="team@example.com")
    member = account.members.get()
    assert (member.user, member.role) == (ana, "member")
    assert (account.created_by, account.updated_by, member.created_by, member.updated_by) == (admin_user,) * 4


def test_rotate_token_shows_the_new_token_once_and_the_old_one_stops(admin_client, client):
    """Rotating from the account list shows the new token in that message only; the old token gets 401."""
    account = AccountFactory(account_name="Rotated")
    old = account.app_secret_token
    response = admin_client.post(
        "/admin/accounts/account/",
        {"action": "rotate_token", "_selected_action": [str(account.pk)]},
        follow=True,
    )
    [shown] = [str(m) for m in response.context["messages"]]
    token = re.fullmatch(
        r"The app secret token of Rotated is ([A-Za-z0-9_-]{43}) — copy it now: "
        r"it is kept hashed and shown only this once\.",
        shown,
    ).group(1)
    assert token not in admin_client.get("/admin/accounts/account/").content.decode()
    assert token not in admin_client.get(f"/admin/accounts/account/{account.pk}/change/").content.decode()
    ingest = {"path": "/server/incoming_data", "data": {}, "content_type": "application/json"}
    assert client.post(**ingest, headers={"CL-X-TOKEN": old}).status_code == 401
    assert client.post(**ingest, headers={"CL-X-TOKEN": token}).status_code == 200


def test_account_page_links_to_its_log(admin_client):
    """The account page links to its destinations, events and deliveries, filtered to it."""
    account = AccountFactory()
    html = admin_client.get(f"/admin/accounts/account/{account.pk}/change/").content.decode()
    assert f"/admin/destinations/destination/?account__pk__exact={account.pk}" in html
    assert f"/admin/server/event/?account__pk__exact={account.pk}" in html
    assert f"/admin/server/delivery/?event__account={account.pk}" in html
