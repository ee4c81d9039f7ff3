"""Every list endpoint: the same number of queries for 1 row as for 50, as a member and as staff;
search, filters and ordering."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from knox.models import AuthToken
from rest_framework.test import APIClient

from accounts.models import Account, AccountMember
from accounts.tests.factories import AccountFactory
from destinations.tests.factories import DestinationFactory
from server.models import Attempt, Delivery, Event

pytestmark = pytest.mark.django_db

LISTS = [
    "/api/accounts/",
    "/api/destinations/",
    "/api/accounts/{account}/destinations/",
    "/api/accounts/{account}/members/",
    "/api/events/",
    "/api/deliveries/",
]


def client_for(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {AuthToken.objects.create(user=user)[1]}")
    return client


def fill(account: Account, rows: int, django_user_model) -> None:
    """`rows` destinations, members, events, deliveries (each with an attempt) on `account`, and as
    many accounts the user is a member of."""
    for n in range(rows):
        destination = DestinationFactory(account=account)
        event = Event.objects.create(account=account, body="{}")
        delivery = Delivery.objects.create(
            event=event, destination=destination, url=destination.url, http_method="POST"
        )
        now = timezone.now()
        Attempt.objects.create(
            delivery=delivery, status_code=200, duration_ms=1, started_at=now, finished_at=now
        )
        other = django_user_model.objects.create_user(username=f"user{account.pk}{n}")
        AccountMember.objects.create(account=account, user=other, role="member")


def queries(client: APIClient, path: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(path)
    assert response.status_code == 200, response.content
    return len(captured.captured_queries)


@pytest.mark.parametrize("path", LISTS)
@pytest.mark.parametrize("as_staff", [False, True], ids=["member", "staff"])
def test_a_list_costs_the_same_queries_for_1_row_and_for_50(django_user_model, path, as_staff):
    """The query count does not grow with the rows (no query per row), whoever asks."""
    user = django_user_model.objects.create_user(username="reader", is_staff=as_staff)
    counts = []
    for rows in (1, 50):
        account = AccountFactory()
        AccountMember.objects.create(account=account, user=user, role="member")
        fill(account, rows, django_user_model)
        counts.append(queries(client_for(user), path.format(account=account.account_id) + "?page_size=100"))
    assert counts[0] == counts[1]
    assert counts[1] <= 6


def test_accounts_search_filter_by_creation_and_order(api_client):
    """?search= matches name or email, ?created_after/before narrow, ?ordering= sorts."""
    old = AccountFactory(account_name="Zeta Shop", email="zeta@example.com")
    Account.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=10))
    AccountFactory(account_name="Alpha", email="ops@shop.example")
    AccountFactory(account_name="Beta", email="beta@example.com")

    def names(**params):
        return [row["account_name"] for row in api_client.get("/api/accounts/", params).json()["results"]]

    assert names(search="shop", ordering="account_name") == ["Alpha", "Zeta Shop"]
    assert names(ordering="-account_name") == ["Zeta Shop", "Beta", "Alpha"]
    since = (timezone.now() - timedelta(days=1)).isoformat()
    assert names(created_after=since, ordering="account_name") == ["Alpha", "Beta"]
    assert names(created_before=since) == ["Zeta Shop"]
    assert api_client.get("/api/accounts/", {"ordering": "app_secret_token_hash"}).status_code == 200
    assert names(ordering="app_secret_token_hash")[0] == "Zeta Shop"  # not an ordering field: ignored


def test_destinations_filter_by_method_and_search_the_url(api_client):
    """?http_method= and ?search= (in the URL)."""
    account = AccountFactory()
    DestinationFactory(account=account, url="https://a.example.com/orders", http_method="GET")
    DestinationFactory(account=account, url="https://b.example.com/orders", http_method="POST")
    DestinationFactory(account=account, url="https://c.example.com/users", http_method="POST")

    def urls(**params):
        return [row["url"] for row in api_client.get("/api/destinations/", params).json()["results"]]

    assert urls(http_method="POST", search="orders") == ["https://b.example.com/orders"]
    assert api_client.get("/api/destinations/", {"http_method": "TRACE"}).status_code == 400


def test_deliveries_and_events_list_newest_first(api_client):
    """The newest delivery and event come first."""
    destination = DestinationFactory()
    made = []
    for n in range(3):
        event = Event.objects.create(
            account=destination.account, body="{}", received_at=timezone.now() + timedelta(seconds=n)
        )
        made.append(
            Delivery.objects.create(
                event=event, destination=destination, url=destination.url, http_method="POST"
            )
        )
    deliveries = [row["delivery_id"] for row in api_client.get("/api/deliveries/").json()["results"]]
    assert deliveries == [str(d.delivery_id) for d in reversed(made)]
    events = [row["event_id"] for row in api_client.get("/api/events/").json()["results"]]
    assert events == [str(d.event_id) for d in reversed(made)]
