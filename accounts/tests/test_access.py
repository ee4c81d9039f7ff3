"""Who may do what: every endpoint and method for an anonymous caller, another account's admin, a
member, an admin of the account and a staff user, as one table."""

import json
from dataclasses import dataclass
from typing import Any

import pytest
import responses
from django.utils import timezone
from knox.models import AuthToken
from rest_framework.test import APIClient

from accounts.models import Account, AccountMember
from accounts.tests.factories import AccountFactory
from destinations.models import Destination
from destinations.tests.factories import DestinationFactory
from server.models import Delivery, Event, Recovery

pytestmark = pytest.mark.django_db

ACTORS = ("anonymous", "outsider", "member", "admin", "staff")
HOOK = "https://a.example.com/hook"
# A range of event receptions that holds the world's event.
WIDE = {"since": "2000-01-01T00:00:00Z", "until": "2100-01-01T00:00:00Z"}


@dataclass
class World:
    account: Account
    destination: Destination
    event: Event
    delivery: Delivery
    recovery: Recovery
    member_id: int
    clients: dict[str, APIClient]


@pytest.fixture
def world(django_user_model) -> World:
    """Account A (an admin, a member, a destination, an event with a failed delivery) and account B,
    administered by the outsider; one API client per actor."""
    users = {
        name: django_user_model.objects.create_user(username=name, email=f"{name}@example.com")
        for name in ("outsider", "member", "admin")
    }
    users["staff"] = django_user_model.objects.create_user(username="staff", is_staff=True)
    account, other = AccountFactory(), AccountFactory()
    AccountMember.objects.create(account=account, user=users["admin"], role="admin")
    AccountMember.objects.create(account=account, user=users["member"], role="member")
    AccountMember.objects.create(account=other, user=users["outsider"], role="admin")
    destination = DestinationFactory(account=account, url=HOOK, headers={})
    event = Event.objects.create(account=account, body='{"a": 1}', processed_at=timezone.now())
    delivery = Delivery.objects.create(
        event=event,
        destination=destination,
        url=HOOK,
        http_method="POST",
        status=Delivery.Status.FAILED,
        attempt_count=1,
    )
    recovery = Recovery.objects.create(
        account=account,
        since=event.received_at,
        until=timezone.now(),
        statuses=["failed"],
        count=0,
        queued=False,
    )
    clients = {"anonymous": APIClient()}
    for name, user in users.items():
        clients[name] = APIClient()
        clients[name].credentials(HTTP_AUTHORIZATION=f"Token {AuthToken.objects.create(user=user)[1]}")
    return World(account, destination, event, delivery, recovery, users["member"].pk, clients)


def _request(world: World, method: str, path: str, body: dict[str, Any] | None) -> tuple[str, str, Any]:
    values = {
        "A": world.account.account_id,
        "D": world.destination.pk,
        "E": world.event.event_id,
        "L": world.delivery.delivery_id,
        "R": world.recovery.recovery_id,
        "U": world.member_id,
    }
    body = {
        key: values.get(value, value) if isinstance(value, str) else value
        for key, value in (body or {}).items()
    }
    return method, path.format(**values), body or None


# (method, path, body, whether a request goes out to the destination when allowed, expected status
# per actor in ACTORS order). A..U (and R) are filled in from the world.
MATRIX = [
    ("GET", "/api/accounts/", None, False, (401, 200, 200, 200, 200)),
    (
        "POST",
        "/api/accounts/",
        {"email": "new@example.com", "account_name": "New"},
        False,
        (401, 201, 201, 201, 201),
    ),
    ("GET", "/api/accounts/{A}/", None, False, (401, 404, 200, 200, 200)),
    ("PATCH", "/api/accounts/{A}/", {"account_name": "Renamed"}, False, (401, 404, 403, 200, 200)),
    (
        "PUT",
        "/api/accounts/{A}/",
        {"email": "renamed@example.com", "account_name": "Renamed"},
        False,
        (401, 404, 403, 200, 200),
    ),
    ("POST", "/api/accounts/{A}/rotate-token/", None, False, (401, 404, 403, 200, 200)),
    ("DELETE", "/api/accounts/{A}/", None, False, (401, 404, 403, 204, 204)),
    ("GET", "/api/accounts/{A}/destinations/", None, False, (401, 404, 200, 200, 200)),
    ("GET", "/api/destinations/", None, False, (401, 200, 200, 200, 200)),
    (
        "POST",
        "/api/destinations/",
        {"account": "A", "url": "https://new.example.com/", "http_method": "POST", "headers": {}},
        False,
        (401, 400, 400, 201, 201),
    ),
    ("GET", "/api/destinations/{D}/", None, False, (401, 404, 200, 200, 200)),
    (
        "PATCH",
        "/api/destinations/{D}/",
        {"url": "https://moved.example.com/"},
        False,
        (401, 404, 403, 200, 200),
    ),
    (
        "PUT",
        "/api/destinations/{D}/",
        {"account": "A", "url": "https://moved.example.com/", "http_method": "PUT", "headers": {}},
        False,
        (401, 404, 403, 200, 200),
    ),
    ("POST", "/api/destinations/{D}/rotate-secret/", None, False, (401, 404, 403, 200, 200)),
    ("GET", "/api/destinations/{D}/secret/", None, False, (401, 404, 403, 200, 200)),
    ("GET", "/api/destinations/{D}/stats/?window=7d", None, False, (401, 404, 200, 200, 200)),
    ("POST", "/api/destinations/{D}/resume/", None, False, (401, 404, 403, 200, 200)),
    ("DELETE", "/api/destinations/{D}/", None, False, (401, 404, 403, 200, 200)),
    ("GET", "/api/events/", None, False, (401, 200, 200, 200, 200)),
    ("GET", "/api/events/{E}/", None, False, (401, 404, 200, 200, 200)),
    ("POST", "/api/events/{E}/redeliver/", None, True, (401, 404, 200, 200, 200)),
    ("GET", "/api/deliveries/", None, False, (401, 200, 200, 200, 200)),
    ("GET", "/api/deliveries/{L}/", None, False, (401, 404, 200, 200, 200)),
    ("POST", "/api/deliveries/{L}/retry/", None, True, (401, 404, 200, 200, 200)),
    ("POST", "/api/destinations/{D}/recover/", WIDE, True, (401, 404, 202, 202, 202)),
    ("POST", "/api/accounts/{A}/recover/", WIDE, True, (401, 404, 202, 202, 202)),
    ("POST", "/api/accounts/{A}/recover/", {**WIDE, "dry_run": True}, False, (401, 404, 200, 200, 200)),
    ("GET", "/api/recoveries/{R}/", None, False, (401, 404, 200, 200, 200)),
    ("GET", "/api/accounts/{A}/members/", None, False, (401, 404, 200, 200, 200)),
    (
        "POST",
        "/api/accounts/{A}/members/",
        {"email": "newcomer@example.com", "role": "member"},
        False,
        (401, 404, 403, 201, 201),
    ),
    ("PATCH", "/api/accounts/{A}/members/{U}/", {"role": "admin"}, False, (401, 404, 403, 200, 200)),
    ("DELETE", "/api/accounts/{A}/members/{U}/", None, False, (401, 404, 403, 204, 204)),
    ("PUT", "/api/accounts/{A}/members/{U}/", {"role": "admin"}, False, (401, 405, 405, 405, 405)),
    ("PATCH", "/api/accounts/{A}/", {"rate_limit": "1000/second"}, False, (401, 404, 403, 400, 200)),
    ("GET", "/api/auth/me/", None, False, (401, 200, 200, 200, 200)),
    ("POST", "/api/auth/logout/", None, False, (401, 204, 204, 204, 204)),
]


@pytest.mark.parametrize("actor", ACTORS)
@pytest.mark.parametrize(
    ("method", "path", "body", "sends", "expected"),
    MATRIX,
    ids=[f"{row[0]} {row[1]}" for row in MATRIX],
)
def test_access(world, actor, method, path, body, sends, expected):
    """Each actor gets the status the table says, and a refused request changes nothing and sends nothing."""
    method, url, data = _request(world, method, path, body)
    before = _snapshot(world)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mocked:
        mocked.post(HOOK, status=200)
        response = world.clients[actor].generic(method, url, **_json(data))
        sent = [call.request.url for call in mocked.calls]
    want = expected[ACTORS.index(actor)]
    assert response.status_code == want, response.content
    if want >= 400:
        assert _snapshot(world) == before
    assert sent == ([HOOK] if sends and want < 400 else [])


def _json(data: dict[str, Any] | None) -> dict[str, Any]:
    if data is None:
        return {}
    return {"data": json.dumps(data, default=str), "content_type": "application/json"}


def _snapshot(world: World) -> tuple:
    """What any write in the table would change."""
    return (
        list(
            Account.objects.values_list(
                "account_id", "account_name", "email", "app_secret_token_hash", "rate_limit"
            )
        ),
        list(Destination.objects.values_list("id", "url", "http_method", "signing_secret", "enabled")),
        list(AccountMember.objects.values_list("account_id", "user_id", "role")),
        list(Delivery.objects.values_list("id", "attempt_count")),
        AuthToken.objects.count(),
    )


@pytest.mark.parametrize(
    ("actor", "visible"), [("outsider", False), ("member", True), ("admin", True), ("staff", True)]
)
@pytest.mark.parametrize(
    ("path", "key"),
    [
        ("/api/accounts/", "account_id"),
        ("/api/destinations/", "id"),
        ("/api/events/", "event_id"),
        ("/api/deliveries/", "delivery_id"),
    ],
)
def test_lists_show_only_what_the_user_may_see(world, actor, visible, path, key):
    """A list holds account A's rows for its members and staff only; the outsider sees only its own."""
    ids = {
        "account_id": str(world.account.account_id),
        "id": world.destination.pk,
        "event_id": str(world.event.event_id),
        "delivery_id": str(world.delivery.delivery_id),
    }
    rows = world.clients[actor].get(path).json()["results"]
    assert (ids[key] in [row[key] for row in rows]) is visible
    if actor == "outsider" and path == "/api/accounts/":
        assert [row["account_name"] for row in rows] == [
            Account.objects.get(members__user__username="outsider").account_name
        ]


def test_a_destination_cannot_be_moved_to_an_account_its_admin_does_not_administer(world):
    """An admin of A moving A's destination to B (where it is no admin) gets 400 on `account`."""
    other = Account.objects.get(members__user__username="outsider")
    response = world.clients["admin"].patch(
        f"/api/destinations/{world.destination.pk}/", {"account": str(other.account_id)}, format="json"
    )
    assert response.status_code == 400
    assert response.json() == {"account": [f'Invalid pk "{other.account_id}" - object does not exist.']}
    world.destination.refresh_from_db()
    assert world.destination.account_id == world.account.account_id


@pytest.mark.parametrize(("actor", "shown"), [("member", False), ("admin", True), ("staff", True)])
def test_header_values_are_for_admins_only(world, actor, shown):
    """Header values and URL userinfo and query may be credentials: a member sees the header names
    with masked values and the URL without them; admins and staff all of it, in the detail, the list
    and the account's destination list."""
    Destination.objects.filter(pk=world.destination.pk).update(
        headers={"Authorization": "Bearer s3cr3t"}, url="https://user:pa55@a.example.com/hook?key=k3y"
    )
    expected = {"Authorization": "Bearer s3cr3t" if shown else "********"}
    url = "https://user:pa55@a.example.com/hook?key=k3y" if shown else "https://a.example.com/hook"
    client = world.clients[actor]
    answers = [
        client.get(f"/api/destinations/{world.destination.pk}/").json(),
        *client.get("/api/destinations/").json()["results"],
        *client.get(f"/api/accounts/{world.account.account_id}/destinations/").json()["results"],
    ]
    assert [(answer["headers"], answer["url"]) for answer in answers] == [(expected, url)] * 3
