"""Recovering a range: POST /api/destinations/{id}/recover/ and /api/accounts/{id}/recover/ send once
more (or count, with dry_run) the deliveries of the events received in [since, until) in the given
statuses, oldest first, against a real local receiver; GET /api/recoveries/{id}/ reads the progress."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone
from knox.models import AuthToken
from rest_framework.test import APIClient

from accounts.models import AccountMember
from accounts.tests.factories import AccountFactory
from destinations.tests.factories import DestinationFactory
from server.models import Delivery, Recovery
from server.services.delivery import delivery_attempt_due
from server.services.log import SKIPPED_BUSY, SKIPPED_DESTINATION_DELETED, SKIPPED_OUT_OF_TIME
from server.services.recovery import SKIPPED_OVER_LIMIT
from server.tests.conftest import wait_until
from server.tests.helpers import a_delivery, answer, run_action

pytestmark = pytest.mark.django_db

SINCE = datetime(2026, 3, 1, tzinfo=UTC)
UNTIL = SINCE + timedelta(days=1)
DESTINATIONS = "/admin/destinations/destination/"
RANGE = {"since": "2026-03-01T00:00:00Z", "until": "2026-03-02T00:00:00Z"}


@pytest.fixture
def destination(receiver):
    return DestinationFactory(account=AccountFactory(), url=f"{receiver.url}/in", headers={})


def recover_url(destination) -> str:
    return f"/api/destinations/{destination.id}/recover/"


def in_range(destination, count: int, *, status: str = "failed") -> list[Delivery]:
    """`count` deliveries to `destination` of events received an hour apart from SINCE, oldest first."""
    return [a_delivery(destination, status=status, at=SINCE + timedelta(hours=n)) for n in range(count)]


def progress(api_client, recovery_id: str) -> dict:
    response = api_client.get(f"/api/recoveries/{recovery_id}/")
    assert response.status_code == 200
    return response.json()


def counts(body: dict) -> dict:
    """What a recovery's representation says of its deliveries."""
    keys = ("status", "count", "taken", "skipped", "sent", "succeeded", "failed", "pending", "paused")
    return {key: body[key] for key in keys}


def client_of(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {AuthToken.objects.create(user=user)[1]}")
    return client


# --- validation ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"until": RANGE["until"]}, "since"),
        ({"since": RANGE["since"]}, "until"),
        ({**RANGE, "since": "2026-03-01T00:00:00"}, "since"),
        ({**RANGE, "until": "yesterday"}, "until"),
        ({**RANGE, "since": 1772323200}, "since"),
        ({**RANGE, "since": ["2026-03-01T00:00:00Z"]}, "since"),
        ({**RANGE, "since": "0001-01-01T00:00:00+01:00"}, "since"),
        ({**RANGE, "until": RANGE["since"]}, "until"),
        ({"since": RANGE["until"], "until": RANGE["since"]}, "until"),
        ({**RANGE, "status": []}, "status"),
        ({**RANGE, "status": ["lost"]}, "status"),
        ({**RANGE, "status": "failed"}, "status"),
        ({**RANGE, "status": [None]}, "status"),
        ({**RANGE, "dry_run": "maybe"}, "dry_run"),
        ({**RANGE, "sinse": RANGE["since"]}, "sinse"),
        (["since", "until"], "non_field_errors"),
        ("since", "non_field_errors"),
        (5, "non_field_errors"),
    ],
)
def test_a_bad_field_is_a_400_naming_it(api_client, destination, body, field):
    """Each bad or missing field, an unknown one, or a body that is no object: 400 naming the field."""
    for url in (recover_url(destination), f"/api/accounts/{destination.account_id}/recover/"):
        response = api_client.post(url, body, format="json")
        assert response.status_code == 400
        assert list(response.json()) == [field]
    assert not Recovery.objects.exists()


def test_the_errors_say_what_to_give(api_client, destination):
    """A date-time without a time zone, and until not after since, as docs/api.md quotes them."""
    naive = api_client.post(recover_url(destination), {**RANGE, "since": "2026-03-01T00:00"}, format="json")
    assert naive.json() == {"since": ["Give the time zone (Z or an offset such as +02:00)."]}
    backwards = {"since": RANGE["until"], "until": RANGE["since"]}
    assert api_client.post(recover_url(destination), backwards, format="json").json() == {
        "until": ["Must be after since."]
    }
    unknown = api_client.post(recover_url(destination), {**RANGE, "sinse": 1}, format="json")
    assert unknown.json() == {"sinse": ["Unknown field."]}


def test_a_body_that_is_not_json_is_a_400(api_client, destination):
    """Not JSON at all: 400 with the parser's detail."""
    response = api_client.post(recover_url(destination), "{since", content_type="application/json")
    assert response.status_code == 400
    assert "JSON parse error" in response.json()["detail"]


# --- dry run ------------------------------------------------------------------------------------------


@pytest.fixture
def spread(destination) -> dict[str, Delivery]:
    """Deliveries at the range's edges and in other statuses, destinations and accounts."""
    other_destination = DestinationFactory(account=destination.account, url=destination.url)
    return {
        "before": a_delivery(destination, at=SINCE - timedelta(microseconds=1)),
        "first": a_delivery(destination, at=SINCE),
        "last": a_delivery(destination, at=UNTIL - timedelta(microseconds=1)),
        "at_until": a_delivery(destination, at=UNTIL),
        "succeeded": a_delivery(destination, status="succeeded", at=SINCE + timedelta(hours=1)),
        "paused": a_delivery(destination, status="paused", at=SINCE + timedelta(hours=2)),
        "other_destination": a_delivery(other_destination, at=SINCE + timedelta(hours=3)),
        "other_account": a_delivery(DestinationFactory(url=destination.url), at=SINCE + timedelta(hours=4)),
    }


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [(None, 2), (["failed"], 2), (["failed", "succeeded"], 3), (["paused", "pending"], 1)],
)
def test_a_dry_run_counts_the_destinations_matching_deliveries(
    api_client, destination, spread, receiver, statuses, expected
):
    """since is included, until excluded; only the statuses asked (failed by default); nothing sent."""
    body = {**RANGE, "dry_run": True} | ({} if statuses is None else {"status": statuses})
    response = api_client.post(recover_url(destination), body, format="json")
    assert (response.status_code, response.json()) == (200, {"count": expected})
    assert receiver.requests == []
    assert not Recovery.objects.exists()


def test_a_dry_run_of_the_account_counts_all_its_destinations(api_client, destination, spread):
    """The account's range holds its other destination's delivery too, not another account's."""
    url = f"/api/accounts/{destination.account_id}/recover/"
    response = api_client.post(url, {**RANGE, "dry_run": True}, format="json")
    assert (response.status_code, response.json()) == (200, {"count": 3})


def test_an_offset_is_read_as_the_instant_it_names(api_client, destination, spread):
    """since 2026-03-01T02:00+02:00 is midnight UTC: the delivery received then is counted."""
    body = {"since": "2026-03-01T02:00:00+02:00", "until": "2026-03-01T02:00:01+02:00", "dry_run": True}
    response = api_client.post(recover_url(destination), body, format="json")
    assert response.json() == {"count": 1}


# --- sync mode ----------------------------------------------------------------------------------------


def test_sync_mode_sends_each_once_oldest_first_with_its_webhook_id(
    api_client, destination, spread, receiver, settings
):
    """202 after the batch: the two failed ones in range sent once, oldest first, with their
    webhook-ids; the progress says done and succeeded 2; nothing else is touched."""
    settings.DATAPUSHER_ADMIN_SEND_CONCURRENCY = 1
    untouched = {name: spread[name] for name in spread if name not in ("first", "last")}
    response = api_client.post(recover_url(destination), RANGE, format="json")
    assert response.status_code == 202
    body = response.json()
    assert [r.headers["webhook-id"] for r in receiver.requests] == [
        str(spread["first"].delivery_id),
        str(spread["last"].delivery_id),
    ]
    expected = {"status": "done", "count": 2, "taken": 2, "skipped": {}, "sent": 2, "succeeded": 2}
    assert counts(body) == {**expected, "failed": 0, "pending": 0, "paused": 0}
    assert progress(api_client, body["recovery_id"]) == body
    assert (body["destination_id"], body["statuses"], body["queued"]) == (destination.id, ["failed"], False)
    for name, delivery in untouched.items():
        stored = Delivery.objects.get(pk=delivery.pk)
        assert (name, stored.status, stored.attempt_count) == (name, delivery.status, 0)


def test_sync_mode_counts_the_failures(api_client, destination, receiver):
    """The receiver answers 500: the deliveries are sent once and end failed (no retry without a broker)."""
    receiver.respond = answer(500)
    deliveries = in_range(destination, 2)
    body = api_client.post(recover_url(destination), RANGE, format="json").json()
    assert (body["sent"], body["succeeded"], body["failed"], body["status"]) == (2, 0, 2, "done")
    assert len(receiver.requests) == 2
    for delivery in deliveries:
        delivery.refresh_from_db()
        assert (delivery.status, delivery.attempt_count, delivery.recovery_id) == (
            "failed",
            1,
            uuid.UUID(body["recovery_id"]),
        )


def test_a_delivery_being_sent_is_skipped(api_client, destination, receiver):
    """One of two is leased by another sender: skipped and counted, the other sent."""
    held, free = in_range(destination, 2)
    Delivery.objects.filter(pk=held.pk).update(
        lease_id=uuid.uuid4(), lease_expires_at=timezone.now() + timedelta(minutes=1)
    )
    body = api_client.post(recover_url(destination), RANGE, format="json").json()
    assert (body["count"], body["taken"], body["skipped"], body["succeeded"]) == (2, 1, {SKIPPED_BUSY: 1}, 1)
    assert [r.headers["webhook-id"] for r in receiver.requests] == [str(free.delivery_id)]
    assert Delivery.objects.get(pk=held.pk).status == "failed"


def test_a_delivery_whose_destination_was_deleted_is_skipped(api_client, destination, receiver):
    """The account's recovery counts a delivery whose destination is gone, and skips it."""
    gone = a_delivery(DestinationFactory(account=destination.account), at=SINCE)
    Delivery.objects.filter(pk=gone.pk).update(destination=None)
    in_range(destination, 1)
    body = api_client.post(f"/api/accounts/{destination.account_id}/recover/", RANGE, format="json").json()
    assert (body["count"], body["taken"], body["skipped"]) == (2, 1, {SKIPPED_DESTINATION_DELETED: 1})
    assert len(receiver.requests) == 1


def test_what_does_not_fit_the_time_stays_as_it_was(api_client, destination, receiver, settings):
    """No time left after the first: one sent, two skipped as out of time and still failed."""
    settings.DATAPUSHER_ADMIN_SEND_CONCURRENCY = 1
    settings.DATAPUSHER_ADMIN_ACTION_SECONDS = 0.001
    first, *rest = in_range(destination, 3)
    body = api_client.post(recover_url(destination), RANGE, format="json").json()
    assert (body["taken"], body["skipped"], body["succeeded"]) == (1, {SKIPPED_OUT_OF_TIME: 2}, 1)
    assert [r.headers["webhook-id"] for r in receiver.requests] == [str(first.delivery_id)]
    assert [Delivery.objects.get(pk=d.pk).status for d in rest] == ["failed", "failed"]


def test_sync_mode_sends_at_most_the_actions_limit(api_client, destination, receiver, settings):
    """DATAPUSHER_ADMIN_ACTION_MAX_DELIVERIES 2 of 3: the two oldest sent, the third reported."""
    settings.DATAPUSHER_ADMIN_ACTION_MAX_DELIVERIES = 2
    deliveries = in_range(destination, 3)
    body = api_client.post(recover_url(destination), RANGE, format="json").json()
    assert (body["count"], body["taken"], body["skipped"]) == (3, 2, {SKIPPED_OVER_LIMIT: 1})
    assert {r.headers["webhook-id"] for r in receiver.requests} == {
        str(d.delivery_id) for d in deliveries[:2]
    }
    assert Delivery.objects.get(pk=deliveries[2].pk).status == "failed"


def test_a_disabled_destinations_deliveries_are_paused_not_sent(api_client, destination, receiver):
    """The usual sending path decides: the destination is disabled, so they are kept paused."""
    type(destination).objects.filter(pk=destination.pk).update(enabled=False)
    in_range(destination, 2)
    body = api_client.post(recover_url(destination), RANGE, format="json").json()
    assert (body["sent"], body["paused"], body["status"]) == (0, 2, "done")
    assert receiver.requests == []


# --- queue mode ---------------------------------------------------------------------------------------


def test_queue_mode_makes_them_pending_due_as_created_and_hands_over_one_batch(
    api_client, destination, broker, settings
):
    """Pending, due as created, attempt_count raised to the schedule's length; the oldest
    DATAPUSHER_DISPATCH_BATCH published now; running until they are sent."""
    settings.DATAPUSHER_DISPATCH_BATCH = 2
    deliveries = in_range(destination, 3)
    Delivery.objects.filter(pk=deliveries[0].pk).update(attempt_count=5)
    response = api_client.post(recover_url(destination), RANGE, format="json")
    assert response.status_code == 202
    body = response.json()
    assert counts(body) == {
        "status": "running",
        "count": 3,
        "taken": 3,
        "skipped": {},
        "sent": 0,
        "succeeded": 0,
        "failed": 0,
        "pending": 3,
        "paused": 0,
    }
    assert body["queued"] is True
    assert broker == [d.pk for d in deliveries[:2]]
    rows = list(Delivery.objects.order_by("id").values_list("status", "next_attempt_at", "attempt_count"))
    assert rows == [("pending", d.created_at, n) for d, n in zip(deliveries, [5, 2, 2], strict=True)]


def test_queue_mode_skips_a_delivery_being_sent_and_one_whose_destination_was_deleted(
    api_client, destination, broker
):
    """The account's recovery takes the free one only; the others are counted by reason, left as they were."""
    held, gone, free = in_range(destination, 3)
    lease = uuid.uuid4()
    Delivery.objects.filter(pk=held.pk).update(
        lease_id=lease, lease_expires_at=timezone.now() + timedelta(minutes=1)
    )
    Delivery.objects.filter(pk=gone.pk).update(destination=None)
    body = api_client.post(f"/api/accounts/{destination.account_id}/recover/", RANGE, format="json").json()
    assert (body["count"], body["taken"], body["pending"]) == (3, 1, 1)
    assert body["skipped"] == {SKIPPED_BUSY: 1, SKIPPED_DESTINATION_DELETED: 1}
    assert broker == [free.pk]
    rows = dict(Delivery.objects.values_list("pk", "status"))
    assert rows == {held.pk: "failed", gone.pk: "failed", free.pk: "pending"}
    assert Delivery.objects.get(pk=held.pk).lease_id == lease


def test_a_queued_recoverys_failure_is_final(api_client, destination, receiver, broker):
    """A worker's 500 ends the recovered delivery failed, not due again after the retry schedule;
    once none is pending the recovery is done."""
    receiver.respond = answer(500)
    (delivery,) = in_range(destination, 1)
    recovery_id = api_client.post(recover_url(destination), RANGE, format="json").json()["recovery_id"]
    delivery_attempt_due(delivery_pk=delivery.pk)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.next_attempt_at, delivery.attempt_count) == ("failed", None, 3)
    body = progress(api_client, recovery_id)
    assert (body["status"], body["sent"], body["failed"]) == ("done", 1, 1)
    assert body["finished_at"] is not None


def test_a_queued_recoverys_throttled_answer_still_waits(api_client, destination, receiver, broker):
    """A 429 with Retry-After keeps the recovered delivery pending (no attempt spent): still running."""
    receiver.respond = answer(429, headers={"Retry-After": "30"})
    (delivery,) = in_range(destination, 1)
    recovery_id = api_client.post(recover_url(destination), RANGE, format="json").json()["recovery_id"]
    delivery_attempt_due(delivery_pk=delivery.pk)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempt_count) == ("pending", 2)
    assert progress(api_client, recovery_id)["status"] == "running"


def test_a_recovery_through_a_real_worker_and_dispatcher_ends_done(
    api_client, worker, dispatcher, receiver, settings
):
    """PostgreSQL, a broker, a worker and the dispatcher: 5 failed deliveries (2 published by the
    request, the rest by the dispatcher) all succeed at the receiver, and the recovery is done."""
    settings.DATAPUSHER_DISPATCH_BATCH = 2
    destination = DestinationFactory(url=f"{receiver.url}/in", headers={})
    deliveries = in_range(destination, 5)
    worker()
    dispatcher()
    recovery_id = api_client.post(recover_url(destination), RANGE, format="json").json()["recovery_id"]
    wait_until(lambda: progress(api_client, recovery_id)["status"] == "done", 30, "the recovery did not end")
    body = progress(api_client, recovery_id)
    assert (body["count"], body["sent"], body["succeeded"], body["failed"]) == (5, 5, 5, 0)
    assert sorted(r.headers["webhook-id"] for r in receiver.requests) == sorted(
        str(d.delivery_id) for d in deliveries
    )


# --- access -------------------------------------------------------------------------------------------


def test_another_accounts_destination_account_and_recovery_are_404(django_user_model, destination):
    """A member of another account: 404 on the destination's and the account's recover, and on its
    recovery's progress; nothing is sent or started."""
    user = django_user_model.objects.create_user(username="stranger")
    AccountMember.objects.create(account=AccountFactory(), user=user, role="admin")
    in_range(destination, 1)
    recovery = Recovery.objects.create(
        account=destination.account, since=SINCE, until=UNTIL, statuses=[], count=0, queued=False
    )
    client = client_of(user)
    for url in (recover_url(destination), f"/api/accounts/{destination.account_id}/recover/"):
        assert client.post(url, RANGE, format="json").status_code == 404
    assert client.get(f"/api/recoveries/{recovery.recovery_id}/").status_code == 404
    assert client.get("/api/recoveries/not-a-uuid/").status_code == 404
    assert Recovery.objects.count() == 1


def test_a_member_may_recover_and_read_the_progress(django_user_model, destination, receiver):
    """Any member of the account (not only its admins) recovers a range and reads its progress."""
    user = django_user_model.objects.create_user(username="member")
    AccountMember.objects.create(account=destination.account, user=user, role="member")
    in_range(destination, 1)
    client = client_of(user)
    response = client.post(f"/api/accounts/{destination.account_id}/recover/", RANGE, format="json")
    assert response.status_code == 202
    assert progress(client, response.json()["recovery_id"])["succeeded"] == 1


def test_reading_the_progress_takes_a_bounded_number_of_queries(
    api_client, destination, receiver, django_assert_max_num_queries
):
    """The progress is one aggregate however many deliveries the recovery took."""
    in_range(destination, 5)
    recovery_id = api_client.post(recover_url(destination), RANGE, format="json").json()["recovery_id"]
    with django_assert_max_num_queries(4):
        progress(api_client, recovery_id)


def test_the_schema_documents_every_answer_of_recover_and_progress(client):
    """Both recover operations: 200 (dry run), 202 and their errors; the progress: 200 and its errors."""
    paths = client.get("/api/schema/", {"format": "json"}).json()["paths"]
    for path in ("/api/destinations/{id}/recover/", "/api/accounts/{account_id}/recover/"):
        assert sorted(paths[path]["post"]["responses"]) == ["200", "202", "400", "401", "404", "503"]
    assert sorted(paths["/api/recoveries/{recovery_id}/"]["get"]["responses"]) == ["200", "401", "404", "503"]


# --- the admin ----------------------------------------------------------------------------------------


def test_the_admin_action_recovers_the_failed_deliveries_of_the_last_day(admin_client, destination, receiver):
    """Recover on a destination: its failed deliveries of events received in the last 24 hours are sent
    once more; the message and the recovery's page give the progress."""
    now = timezone.now()
    recent = a_delivery(destination, at=now - timedelta(hours=1))
    a_delivery(destination, at=now - timedelta(hours=25))
    a_delivery(destination, status="succeeded", at=now - timedelta(hours=2))
    shown = run_action(admin_client, DESTINATIONS, "recover_failed", [destination])
    summary = "1 delivery matched, 1 taken: 1 sent (1 succeeded, 0 failed), 0 pending, 0 paused; done."
    assert len(shown) == 1
    assert shown[0].endswith(summary)
    assert [r.headers["webhook-id"] for r in receiver.requests] == [str(recent.delivery_id)]
    recovery = Recovery.objects.get()
    assert (recovery.destination, recovery.statuses, recovery.until - recovery.since) == (
        destination,
        ["failed"],
        timedelta(hours=24),
    )
    page = admin_client.get(f"/admin/server/recovery/{recovery.pk}/change/").content.decode()
    assert summary in page
    listed = admin_client.get("/admin/server/delivery/", {"recovery__recovery_id__exact": recovery.pk})
    assert list(listed.context["cl"].result_list) == [recent]
    found = admin_client.get("/admin/server/recovery/", {"q": str(recovery.pk)})
    assert list(found.context["cl"].result_list) == [recovery]


def test_without_a_broker_the_admin_recovers_one_destination_at_a_time(admin_client, receiver):
    """Two destinations selected in sync mode: refused with a message, nothing sent or started."""
    destinations = [DestinationFactory(url=f"{receiver.url}/in", headers={}) for _ in range(2)]
    for destination in destinations:
        a_delivery(destination, at=timezone.now())
    shown = run_action(admin_client, DESTINATIONS, "recover_failed", destinations)
    assert shown == [
        "Nothing sent: without a broker a recovery sends from this request (for up to "
        "DATAPUSHER_ADMIN_ACTION_SECONDS), so recover one destination at a time."
    ]
    assert (receiver.requests, Recovery.objects.count()) == ([], 0)
