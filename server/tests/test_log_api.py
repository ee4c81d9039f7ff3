"""The event and delivery log: API, filters, redelivery, retention, admin."""

import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.tests.factories import AccountFactory
from destinations.models import Destination
from destinations.tests.factories import DestinationFactory
from server.models import Attempt, Delivery, Event
from server.tests.helpers import ingest

pytestmark = pytest.mark.django_db


@pytest.fixture
def pushed(client, mocked):
    """One account with a succeeding and a failing destination, and one pushed event."""
    account = AccountFactory()
    ok = DestinationFactory(account=account, url="https://ok.example.com/")
    bad = DestinationFactory(account=account, url="https://bad.example.com/")
    mocked.post("https://ok.example.com/", status=200, body="fine")
    mocked.post("https://bad.example.com/", status=500, body="boom")
    response = ingest(client, account, event_id="evt-1")
    assert response.status_code == 200
    answer = response.json()
    return {"account": account, "ok": ok, "bad": bad, "answer": answer}


def test_log_endpoints_need_authentication():
    """The log is behind the same staff authentication as the rest of /api/."""
    client = APIClient()
    assert [client.get(url).status_code for url in ("/api/events/", "/api/deliveries/")] == [401, 401]


def test_event_detail_has_body_deliveries_and_attempts(api_client, pushed):
    """GET /api/events/{id}/ shows the body as received and each delivery with its attempts."""
    event_id = pushed["answer"]["event_id"]
    response = api_client.get(f"/api/events/{event_id}/")
    assert response.status_code == 200
    event = response.json()
    assert (event["event_id"], event["account"], event["external_id"], event["body"]) == (
        event_id,
        str(pushed["account"].account_id),
        "evt-1",
        '{"a": 1}',
    )
    assert [
        (d["destination_id"], d["status"], d["status_code"], d["attempt_count"]) for d in event["deliveries"]
    ] == [
        (pushed["ok"].id, "succeeded", 200, 1),
        (pushed["bad"].id, "failed", 500, 1),
    ]
    assert [a["response_body"] for d in event["deliveries"] for a in d["attempts"]] == ["fine", "boom"]
    assert event["deliveries"][1]["attempts"][0]["error"] == "destination answered HTTP 500"


def test_event_list_filters(api_client, client, pushed, mocked):
    """Events filter by account, external_id and received time."""
    other = AccountFactory()
    ingest(client, other)
    Event.objects.filter(account=other).update(received_at=timezone.now() - timedelta(days=2))
    since = (timezone.now() - timedelta(days=1)).isoformat()

    def ids(**params):
        return [e["event_id"] for e in api_client.get("/api/events/", params).json()["results"]]

    mine = pushed["answer"]["event_id"]
    theirs = str(Event.objects.get(account=other).event_id)
    assert ids(account=str(pushed["account"].account_id)) == [mine]
    assert ids(external_id="evt-1") == [mine]
    assert ids(received_after=since) == [mine]
    assert ids(received_before=since) == [theirs]
    assert ids() == [mine, theirs]  # newest first


def test_event_list_rejects_malformed_filters(api_client):
    """Malformed filter values are 400 naming the parameter."""
    response = api_client.get("/api/events/", {"account": "x", "received_after": "yesterday"})
    assert response.status_code == 400
    assert set(response.json()) == {"account", "received_after"}


def test_delivery_list_filters(api_client, pushed):
    """Deliveries filter by status, destination, account and time."""

    def destinations(**params):
        response = api_client.get("/api/deliveries/", params)
        assert response.status_code == 200
        return [d["destination_id"] for d in response.json()["results"]]

    ok, bad = pushed["ok"].id, pushed["bad"].id
    hour_ago = (timezone.now() - timedelta(hours=1)).isoformat()
    assert destinations(status="failed") == [bad]
    assert destinations(status="succeeded") == [ok]
    assert destinations(destination=ok) == [ok]
    assert destinations(account=str(pushed["account"].account_id)) == [bad, ok]  # newest first
    assert destinations(account=str(AccountFactory().account_id)) == []
    assert destinations(created_after=hour_ago, processed_after=hour_ago) == [bad, ok]
    assert destinations(created_before=hour_ago) == []
    assert destinations(processed_before=hour_ago) == []
    assert api_client.get("/api/deliveries/", {"status": "lost"}).status_code == 400


def test_lists_take_constant_queries(api_client, client, mocked, django_assert_max_num_queries):
    """Listing 20 events or 40 deliveries takes a handful of queries, not one per row."""
    account = AccountFactory()
    for name in ("a", "b"):
        DestinationFactory(account=account, url=f"https://{name}.example.com/")
        mocked.post(f"https://{name}.example.com/")
    for _ in range(20):
        ingest(client, account)
    with django_assert_max_num_queries(4):
        assert len(api_client.get("/api/deliveries/", {"page_size": 40}).json()["results"]) == 40
    with django_assert_max_num_queries(4):
        assert len(api_client.get("/api/events/").json()["results"]) == 20
    event_id = Event.objects.first().event_id
    with django_assert_max_num_queries(6):
        assert api_client.get(f"/api/events/{event_id}/").status_code == 200


def test_redeliver_sends_only_failed_deliveries_again(api_client, pushed, mocked):
    """POST /redeliver/ retries failed deliveries with the same webhook-id and answers the new outcome."""
    mocked.post("https://bad.example.com/", status=200)
    [first_webhook_id] = [c.request.headers["webhook-id"] for c in mocked.calls if "bad" in c.request.url]
    response = api_client.post(f"/api/events/{pushed['answer']['event_id']}/redeliver/")
    assert response.status_code == 200
    assert [
        (d["destination_id"], d["status"], d["status_code"], d["attempt_count"]) for d in response.json()
    ] == [(pushed["bad"].id, "succeeded", 200, 2)]
    assert len(mocked.calls) == 3
    assert mocked.calls[2].request.headers["webhook-id"] == first_webhook_id
    assert Attempt.objects.filter(delivery__destination=pushed["bad"]).count() == 2


def test_redeliver_all_sends_every_delivery(api_client, pushed, mocked):
    """?all=true also resends succeeded deliveries."""
    mocked.post("https://ok.example.com/")
    mocked.post("https://bad.example.com/")
    response = api_client.post(f"/api/events/{pushed['answer']['event_id']}/redeliver/?all=true")
    assert [d["attempt_count"] for d in response.json()] == [2, 2]


def test_redelivery_to_a_get_destination_sends_the_same_query_as_the_first_attempt(
    client, api_client, mocked
):
    """The stored body is parsed again for a GET destination's query: nested values as compact JSON,
    strings as they are, the same bytes as the ingest sent."""
    account = AccountFactory()
    DestinationFactory(account=account, url="https://get.example.com/hook", http_method="GET")
    mocked.get("https://get.example.com/hook", status=500)
    answer = ingest(client, account, b'{"name": "caf\xc3\xa9", "items": [1, {"a": null}]}').json()
    mocked.get("https://get.example.com/hook", status=200)
    response = api_client.post(f"/api/events/{answer['event_id']}/redeliver/")
    assert [d["status"] for d in response.json()] == ["succeeded"]
    first, again = (call.request.url for call in mocked.calls)
    assert (
        first == again == "https://get.example.com/hook?name=caf%C3%A9&items=%5B1%2C%7B%22a%22%3Anull%7D%5D"
    )


def test_redeliver_rejects_a_malformed_all_flag(api_client, pushed):
    """?all=maybe is a 400 naming the parameter, not a guess."""
    response = api_client.post(f"/api/events/{pushed['answer']['event_id']}/redeliver/?all=maybe")
    assert (response.status_code, response.json()) == (400, {"all": ["Must be a valid boolean."]})


def test_redeliver_with_nothing_to_send_is_an_empty_list(client, api_client, mocked):
    """Every delivery succeeded: 200 [] and nothing sent."""
    account = AccountFactory()
    DestinationFactory(account=account, url="https://ok.example.com/")
    mocked.post("https://ok.example.com/")
    answer = ingest(client, account).json()
    response = api_client.post(f"/api/events/{answer['event_id']}/redeliver/")
    assert (response.status_code, response.json()) == (200, [])
    assert len(mocked.calls) == 1


def test_retry_sends_one_delivery_again(api_client, pushed, mocked):
    """POST /api/deliveries/{id}/retry/ answers with the delivery and its new attempt."""
    mocked.post("https://bad.example.com/", status=503, body="still down")
    delivery_id = pushed["answer"]["deliveries"][1]["delivery_id"]
    response = api_client.post(f"/api/deliveries/{delivery_id}/retry/")
    assert response.status_code == 200
    body = response.json()
    assert (body["delivery_id"], body["status"], body["status_code"], body["attempt_count"]) == (
        delivery_id,
        "failed",
        503,
        2,
    )
    assert [a["response_body"] for a in body["attempts"]] == ["boom", "still down"]


def test_delivery_log_survives_destination_deletion_and_retry_is_409(api_client, pushed):
    """Deleting a destination keeps its deliveries (url and method kept); they cannot be retried."""
    delivery_id = pushed["answer"]["deliveries"][1]["delivery_id"]
    pushed["bad"].delete()
    detail = api_client.get(f"/api/deliveries/{delivery_id}/").json()
    assert (detail["destination_id"], detail["url"], detail["http_method"]) == (
        None,
        "https://bad.example.com/",
        "POST",
    )
    response = api_client.post(f"/api/deliveries/{delivery_id}/retry/")
    assert response.status_code == 409
    assert response.json() == {
        "detail": "The destination of this delivery was deleted; it cannot be sent again."
    }


def test_unknown_ids_are_404(api_client):
    """Unknown or malformed event and delivery ids are 404."""
    for url in (
        "/api/events/00000000-0000-0000-0000-000000000000/",
        "/api/events/nope/redeliver/",
        "/api/deliveries/00000000-0000-0000-0000-000000000000/retry/",
        "/api/deliveries/123/",
    ):
        response = (
            api_client.get(url) if "redeliver" not in url and "retry" not in url else api_client.post(url)
        )
        assert response.status_code == 404, url


def test_deleting_an_account_deletes_its_events_deliveries_and_attempts(api_client, pushed):
    """The account's whole log goes with it (database cascade)."""
    assert api_client.delete(f"/api/accounts/{pushed['account'].account_id}/").status_code == 204
    assert (
        Event.objects.count(),
        Delivery.objects.count(),
        Attempt.objects.count(),
        Destination.objects.count(),
    ) == (
        0,
        0,
        0,
        0,
    )


def test_purge_events_deletes_old_events_in_batches(client, mocked):
    """purge_events --older-than-days N deletes older events with their log, keeps newer ones."""
    account = AccountFactory()
    DestinationFactory(account=account, url="https://h.example.com/")
    mocked.post("https://h.example.com/")
    for _ in range(5):
        ingest(client, account)
    old = list(Event.objects.values_list("event_id", flat=True)[:3])
    Event.objects.filter(event_id__in=old).update(received_at=timezone.now() - timedelta(days=10))
    out = io.StringIO()
    call_command("purge_events", "--older-than-days", "7", "--batch-size", "2", stdout=out)
    assert out.getvalue() == "Deleted 3 events received before 7 days ago.\n"
    assert Event.objects.count() == 2
    assert not Event.objects.filter(event_id__in=old).exists()
    assert Delivery.objects.count() == Attempt.objects.count() == 2


def test_purge_events_defaults_to_the_retention_setting(settings):
    """Without --older-than-days the DATAPUSHER_EVENT_RETENTION_DAYS setting applies."""
    settings.DATAPUSHER_EVENT_RETENTION_DAYS = 30
    account = AccountFactory()
    Event.objects.create(account=account, body="{}", received_at=timezone.now() - timedelta(days=31))
    Event.objects.create(account=account, body="{}", received_at=timezone.now() - timedelta(days=29))
    out = io.StringIO()
    call_command("purge_events", stdout=out)
    assert out.getvalue() == "Deleted 1 events received before 30 days ago.\n"
    assert Event.objects.count() == 1


def test_admin_lists_and_redelivers(admin_client, pushed, mocked):
    """Admin: event and delivery lists with filters, attempts inline, and a redeliver action."""
    assert admin_client.get("/admin/server/event/").status_code == 200
    assert (
        admin_client.get("/admin/server/delivery/", {"status__exact": "failed"}).context["cl"].result_count
        == 1
    )
    delivery = Delivery.objects.get(destination=pushed["bad"])
    page = admin_client.get(f"/admin/server/delivery/{delivery.id}/change/")
    assert page.status_code == 200 and "boom" in page.content.decode()
    mocked.post("https://bad.example.com/", status=200)
    ok = Delivery.objects.get(destination=pushed["ok"])
    ok.destination.delete()
    response = admin_client.post(
        "/admin/server/delivery/",
        {"action": "redeliver", "_selected_action": [delivery.id, ok.id]},
        follow=True,
    )
    assert response.status_code == 200
    assert [str(m) for m in response.context["messages"]] == [
        "Sent 1 of the 2 selected deliveries: 1 succeeded, 0 failed. 1 skipped: 1 destination deleted."
    ]
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempt_count) == ("succeeded", 2)


def test_schema_documents_redeliver_and_retry_as_they_answer(api_client):
    """The OpenAPI schema: redeliver is a plain array (no pagination) with only `all` as a query
    parameter, and both actions document 200 (sync), 202 (queue) and retry's 409."""
    schema = api_client.get("/api/schema/", {"format": "json"}).json()
    redeliver = schema["paths"]["/api/events/{event_id}/redeliver/"]["post"]
    retry = schema["paths"]["/api/deliveries/{delivery_id}/retry/"]["post"]
    assert [(p["name"], p["in"]) for p in redeliver["parameters"]] == [("all", "query"), ("event_id", "path")]
    array = {"type": "array", "items": {"$ref": "#/components/schemas/Delivery"}}
    assert {
        code: r["content"]["application/json"]["schema"]
        for code, r in redeliver["responses"].items()
        if code.startswith("2")
    } == {
        "200": array,
        "202": array,
    }
    assert [(p["name"], p["in"]) for p in retry["parameters"]] == [("delivery_id", "path")]
    assert sorted(retry["responses"]) == ["200", "202", "401", "404", "409", "503"]


@pytest.fixture
def queue_mode(settings, published):
    settings.DATAPUSHER_DELIVERY_MODE = "queue"
    settings.CELERY_BROKER_URL = "redis://broker.invalid:6379/0"
    return published


def test_queue_mode_retry_is_202_and_leaves_the_sending_to_the_workers(
    api_client, pushed, queue_mode, mocked
):
    """Queue mode: POST /retry/ answers 202 with the delivery pending and due now, published for
    the workers; nothing is sent in the request."""
    delivery_id = pushed["answer"]["deliveries"][1]["delivery_id"]
    response = api_client.post(f"/api/deliveries/{delivery_id}/retry/")
    assert response.status_code == 202
    body = response.json()
    assert (body["delivery_id"], body["status"], body["attempt_count"]) == (delivery_id, "pending", 1)
    stored = Delivery.objects.get(delivery_id=delivery_id)
    assert queue_mode == [stored.pk]
    assert (stored.lease_id, stored.dispatched_at is not None) == (None, True)
    assert stored.next_attempt_at <= timezone.now()
    assert len(mocked.calls) == 2  # only the ingest's


def test_queue_mode_redeliver_is_202_with_the_deliveries_pending(api_client, pushed, queue_mode):
    """Queue mode: POST /redeliver/?all=true answers 202 with every delivery pending, published."""
    response = api_client.post(f"/api/events/{pushed['answer']['event_id']}/redeliver/?all=true")
    assert response.status_code == 202
    assert [(d["destination_id"], d["status"]) for d in response.json()] == [
        (pushed["ok"].id, "pending"),
        (pushed["bad"].id, "pending"),
    ]
    assert sorted(queue_mode) == sorted(Delivery.objects.values_list("pk", flat=True))
