import json
import secrets
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone

from accounts.tests.factories import AccountFactory
from destinations.tests.factories import DestinationFactory
from server.models import Attempt, Delivery, Event
from server.services.delivery import bulkhead
from server.services.ingest import TEST_EVENT
from server.tests.helpers import a_delivery, ingest, run_action

pytestmark = pytest.mark.django_db

EVENTS = "/admin/server/event/"
DELIVERIES = "/admin/server/delivery/"
ATTEMPTS = "/admin/server/attempt/"
ACCOUNTS = "/admin/accounts/account/"
DESTINATIONS = "/admin/destinations/destination/"


def an_attempt(delivery, *, at) -> Attempt:
    return Attempt.objects.create(
        delivery=delivery, status_code=500, duration_ms=12, started_at=at, finished_at=at, error="HTTP 500"
    )


def listed(response) -> list:
    return list(response.context["cl"].result_list)


def test_log_models_are_under_delivery_log(admin_client):
    """The admin index lists the log under "Delivery log", not the app's name."""
    html = admin_client.get("/admin/").content.decode()
    assert "Delivery log" in html
    assert ">Server<" not in html


def test_times_are_shown_to_the_second(admin_client):
    """Three attempts in one minute read apart: list times carry seconds."""
    destination = DestinationFactory()
    base = datetime(2026, 3, 4, 17, 1, 5, tzinfo=UTC)
    delivery = a_delivery(destination, at=base)
    for seconds in (0, 7, 42):
        an_attempt(delivery, at=base + timedelta(seconds=seconds))
    html = admin_client.get(ATTEMPTS).content.decode()
    for shown in ("2026-03-04 17:01:05 UTC", "2026-03-04 17:01:12 UTC", "2026-03-04 17:01:47 UTC"):
        assert shown in html
    assert "2026-03-04 17:01:05 UTC" in admin_client.get(EVENTS).content.decode()
    assert "2026-03-04 17:01:05 UTC" in admin_client.get(DELIVERIES).content.decode()


def test_lists_are_newest_first(admin_client):
    """Events, deliveries and attempts list the newest first."""
    destination = DestinationFactory()
    now = timezone.now()
    old = a_delivery(destination, at=now - timedelta(hours=1))
    new = a_delivery(destination, at=now)
    old_attempt, new_attempt = an_attempt(old, at=now - timedelta(hours=1)), an_attempt(new, at=now)
    assert listed(admin_client.get(EVENTS)) == [new.event, old.event]
    assert listed(admin_client.get(DELIVERIES)) == [new, old]
    assert listed(admin_client.get(ATTEMPTS)) == [new_attempt, old_attempt]


def test_event_search_by_event_id_delivery_id_and_external_id(admin_client):
    """The event list finds an event by its id, by one of its delivery ids, and by CL-X-EVENT-ID."""
    destination = DestinationFactory()
    target = a_delivery(destination, external_id="order-42")
    a_delivery(destination, external_id="order-43")
    for term in (str(target.event_id), str(target.delivery_id), "order-42"):
        assert listed(admin_client.get(EVENTS, {"q": term})) == [target.event]


def test_delivery_search_by_delivery_id_event_id_and_external_id(admin_client):
    """The delivery list finds a delivery by its id, its event's id and its event's CL-X-EVENT-ID."""
    destination = DestinationFactory()
    target = a_delivery(destination, external_id="order-42")
    a_delivery(destination, external_id="order-43")
    for term in (str(target.delivery_id), str(target.event_id), "order-42"):
        assert listed(admin_client.get(DELIVERIES, {"q": term})) == [target]


def test_attempt_search_by_delivery_id_and_event_id(admin_client):
    """The attempt list finds attempts by their delivery's or event's id; other text finds none."""
    destination = DestinationFactory()
    target, other = a_delivery(destination), a_delivery(destination)
    attempt = an_attempt(target, at=timezone.now())
    an_attempt(other, at=timezone.now())
    for term in (str(target.delivery_id), str(target.event_id)):
        assert listed(admin_client.get(ATTEMPTS, {"q": term})) == [attempt]
    assert listed(admin_client.get(ATTEMPTS, {"q": "not-an-id"})) == []


def test_account_filter_takes_an_id_and_refuses_anything_else(admin_client):
    """?event__account=<id> keeps that account's deliveries; a value that is no id gets ?e=1, not a 500."""
    mine, theirs = a_delivery(DestinationFactory()), a_delivery(DestinationFactory())
    response = admin_client.get(DELIVERIES, {"event__account": str(mine.event.account_id)})
    assert listed(response) == [mine]
    assert theirs not in listed(response)
    refused = admin_client.get(DELIVERIES, {"event__account": "nope"})
    assert refused.status_code == 302
    assert refused.url == f"{DELIVERIES}?e=1"


def test_filters_are_autocompletes_not_lists_of_every_row(admin_client):
    """The account and destination filters render an autocomplete, not one link per account."""
    accounts = [AccountFactory(account_name=f"Unlisted {i}") for i in range(3)]
    html = admin_client.get(DELIVERIES).content.decode()
    assert 'class="admin-autocomplete' in html
    assert 'data-field-name="account"' in html
    assert 'data-field-name="destination"' in html
    assert all(account.account_name not in html for account in accounts)


@pytest.mark.parametrize(
    ("model_name", "field_name", "term"), [("event", "account", "acme"), ("delivery", "destination", "acme")]
)
def test_filter_autocompletes_search_accounts_and_destinations(admin_client, model_name, field_name, term):
    """The filters' autocomplete answers the rows matching what was typed, and only those."""
    acme = DestinationFactory(url="https://acme.example.com/in", account=AccountFactory(account_name="Acme"))
    DestinationFactory(url="https://other.example.com/in", account=AccountFactory(account_name="Other"))
    response = admin_client.get(
        "/admin/admin-autocomplete/",
        {"app_label": "server", "model_name": model_name, "field_name": field_name, "term": term},
    )
    assert response.status_code == 200
    expected = acme.account if field_name == "account" else acme
    assert response.json()["results"] == [{"id": str(expected.pk), "text": str(expected)}]


def _rows(count):
    destination = DestinationFactory()
    for _ in range(count):
        an_attempt(a_delivery(destination, status="failed", error="HTTP 500"), at=timezone.now())


@pytest.mark.parametrize("rows", [1, 50])
@pytest.mark.parametrize(
    ("url", "queries"),
    # session, user, count, page; the events' deliveries; the date hierarchy's two.
    [(EVENTS, 7), (DELIVERIES, 6), (ATTEMPTS, 6), (ACCOUNTS, 5), (DESTINATIONS, 5)],
)
def test_changelists_make_no_query_per_row(admin_client, django_assert_max_num_queries, rows, url, queries):
    """Each list page costs the same few queries for 1 row as for 50."""
    _rows(rows)
    for _ in range(rows - 1):
        DestinationFactory()
    with django_assert_max_num_queries(queries):
        response = admin_client.get(url)
    assert response.status_code == 200
    assert response.context["cl"].result_count >= rows


def test_no_token_or_secret_on_any_list_page(admin_client):
    """No app secret token, signing secret, header value or URL password on a list page."""
    destination = DestinationFactory(
        url="https://user:hunter2pass@hooks.example.com/in", headers={"Authorization": "Bearer h3adervalue"}
    )
    delivery = a_delivery(destination)
    an_attempt(delivery, at=timezone.now())
    secrets = [
        destination.account.app_secret_token,
        destination.account.app_secret_token_hash,
        destination.signing_secret,
        "hunter2pass",
        "h3adervalue",
    ]
    for url in (EVENTS, DELIVERIES, ATTEMPTS, ACCOUNTS, DESTINATIONS):
        html = admin_client.get(url).content.decode()
        assert "hooks.example.com" in html or url in (EVENTS, ACCOUNTS, ATTEMPTS)
        assert [s for s in secrets if s in html] == []


def test_event_list_links_to_its_deliveries(admin_client):
    """An event's row sums up its deliveries by status, linking to them; ?event= lists exactly those."""
    destination = DestinationFactory()
    delivery = a_delivery(destination, status="failed")
    Delivery.objects.create(
        event=delivery.event,
        destination=destination,
        url=destination.url,
        http_method="POST",
        status="succeeded",
    )
    a_delivery(destination)
    html = admin_client.get(EVENTS).content.decode()
    assert f'<a href="{DELIVERIES}?event={delivery.event_id}">1 succeeded, 1 failed</a>' in html
    response = admin_client.get(DELIVERIES, {"event": str(delivery.event_id)})
    assert sorted(d.pk for d in listed(response)) == [delivery.pk, delivery.pk + 1]
    assert admin_client.get(DELIVERIES, {"event": "nope"}).url == f"{DELIVERIES}?e=1"


def test_event_page_lists_deliveries_without_a_query_each(admin_client, django_assert_max_num_queries):
    """An event's page shows 20 deliveries inline with their destinations in a few queries, not one each."""
    destination = DestinationFactory()
    delivery = a_delivery(destination)
    for _ in range(19):
        other = DestinationFactory(account=destination.account)
        Delivery.objects.create(event=delivery.event, destination=other, url=other.url, http_method="POST")
    with django_assert_max_num_queries(8):
        response = admin_client.get(f"{EVENTS}{delivery.event_id}/change/")
    assert response.content.decode().count("/admin/destinations/destination/") >= 20


def test_delivery_page_links_event_destination_and_account(admin_client):
    """A delivery's page links to its event, its destination and its account."""
    delivery = a_delivery(DestinationFactory())
    html = admin_client.get(f"{DELIVERIES}{delivery.pk}/change/").content.decode()
    assert f"/admin/server/event/{delivery.event_id}/change/" in html
    assert f"/admin/destinations/destination/{delivery.destination_id}/change/" in html
    assert f"/admin/accounts/account/{delivery.event.account_id}/change/" in html


def test_redeliver_sends_again_with_the_same_webhook_id(admin_client, receiver):
    """Redeliver sends the event's body again to the destination, signed with the delivery's webhook-id."""
    delivery = a_delivery(DestinationFactory(url=f"{receiver.url}/in"))
    shown = run_action(admin_client, DELIVERIES, "redeliver", [delivery])
    assert shown == ["Sent 1 of the 1 selected delivery: 1 succeeded, 0 failed."]
    [request] = receiver.requests
    assert (request.method, request.path, request.body) == ("POST", "/in", b'{"a": 1}')
    assert request.headers["webhook-id"] == str(delivery.delivery_id)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempt_count, delivery.last_status_code) == ("succeeded", 1, 200)


def test_redeliver_says_how_many_failed_and_why_others_were_skipped(admin_client, receiver):
    """Of 4 selected: 2 sent and failed again, 1 skipped as being sent, 1 as its destination is gone."""
    receiver.respond = lambda handler: (handler.send_response(503), handler.end_headers())
    destination = DestinationFactory(url=receiver.url)
    failing = [a_delivery(destination), a_delivery(destination)]
    busy = a_delivery(
        destination, lease_id=uuid.uuid4(), lease_expires_at=timezone.now() + timedelta(minutes=1)
    )
    orphan = a_delivery(DestinationFactory())
    orphan.destination.delete()
    shown = run_action(admin_client, DELIVERIES, "redeliver", [*failing, busy, orphan])
    assert shown == [
        "Sent 2 of the 4 selected deliveries: 0 succeeded, 2 failed. "
        "2 skipped: 1 being sent right now, 1 destination deleted."
    ]
    assert len(receiver.requests) == 2


def test_retry_failed_skips_those_that_succeeded(admin_client, receiver):
    """Retry sends the failed delivery and skips the succeeded one, saying so."""
    destination = DestinationFactory(url=receiver.url)
    failed, succeeded = a_delivery(destination), a_delivery(destination, status="succeeded")
    shown = run_action(admin_client, DELIVERIES, "retry_failed", [failed, succeeded])
    assert shown == [
        "Sent 1 of the 2 selected deliveries: 1 succeeded, 0 failed. 1 skipped: 1 had succeeded."
    ]
    assert [r.headers["webhook-id"] for r in receiver.requests] == [str(failed.delivery_id)]


def test_event_redeliver_sends_all_its_deliveries(admin_client, receiver):
    """Redelivering an event sends each of its deliveries, succeeded ones too."""
    first = DestinationFactory(url=f"{receiver.url}/1")
    second = DestinationFactory(account=first.account, url=f"{receiver.url}/2")
    delivery = a_delivery(first, status="succeeded")
    Delivery.objects.create(
        event=delivery.event, destination=second, url=second.url, http_method="POST", status="failed"
    )
    shown = run_action(admin_client, EVENTS, "redeliver", [delivery.event])
    assert shown == ["Sent 2 of the 2 selected deliveries: 2 succeeded, 0 failed."]
    assert sorted(r.path for r in receiver.requests) == ["/1", "/2"]


def test_redeliver_sends_no_more_than_the_bound_at_once(admin_client, receiver, settings):
    """7 deliveries to a destination taking 300 ms, bound 3: never more than 3 in flight, all 7 sent."""
    settings.DATAPUSHER_ADMIN_SEND_CONCURRENCY = 3
    receiver.respond = lambda handler: (time.sleep(0.3), handler.send_response(200), handler.end_headers())
    destination = DestinationFactory(url=receiver.url)
    deliveries = [a_delivery(destination) for _ in range(7)]
    shown = run_action(admin_client, DELIVERIES, "redeliver", deliveries)
    assert shown == ["Sent 7 of the 7 selected deliveries: 7 succeeded, 0 failed."]
    assert len(receiver.requests) == 7
    assert receiver.max_in_flight == 3


def test_redeliver_starts_nothing_it_could_not_finish_in_time(admin_client, receiver, settings):
    """A destination that accepts and says nothing: the first group times out, the rest is left for
    want of time, as the message says."""
    settings.DATAPUSHER_ADMIN_SEND_CONCURRENCY = 2
    settings.DATAPUSHER_ADMIN_ACTION_SECONDS = 1.0
    settings.DATAPUSHER_CONNECT_TIMEOUT = settings.DATAPUSHER_READ_TIMEOUT = 0.3
    receiver.respond = lambda handler: time.sleep(1.5)
    destination = DestinationFactory(url=receiver.url)
    deliveries = [a_delivery(destination) for _ in range(5)]
    shown = run_action(admin_client, DELIVERIES, "redeliver", deliveries)
    assert shown == [
        "Sent 2 of the 5 selected deliveries: 0 succeeded, 2 failed. "
        "3 skipped: 3 not started: the action's time was up."
    ]
    assert len(receiver.requests) == 2
    untouched = Delivery.objects.filter(pk__in=[d.pk for d in deliveries[2:]])
    assert {(d.attempt_count, d.lease_id) for d in untouched} == {(0, None)}


def test_with_a_broker_redeliver_queues_for_the_workers(admin_client, receiver, settings, monkeypatch):
    """With a broker the action sends nothing itself: the delivery is pending, due now, for the workers."""
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:9/0"
    monkeypatch.setattr("server.broker.accepting", lambda: False)  # the dispatcher publishes it
    delivery = a_delivery(DestinationFactory(url=receiver.url))
    shown = run_action(admin_client, DELIVERIES, "redeliver", [delivery])
    assert shown == ["Queued 1 of the 1 selected delivery for the workers."]
    delivery.refresh_from_db()
    assert delivery.status == "pending"
    assert delivery.next_attempt_at <= timezone.now()
    assert receiver.requests == []


def run_page_action(admin_client, change_url, action, obj):
    """Run an action from the object's change page (its "Action" select, CHANGE_FORM-action)."""
    page = admin_client.get(change_url).content.decode()
    assert f'<option value="{action}">' in page
    response = admin_client.post(
        change_url, {"CHANGE_FORM-action": action, "_selected_action": str(obj.pk), "index": "0"}
    )
    assert (response.status_code, response.url) == (302, change_url)
    return [str(m) for m in admin_client.get(change_url).context["messages"]]


def test_redeliver_from_the_delivery_page(admin_client, receiver):
    """The delivery page offers Redeliver, which sends it and comes back to the page with the result."""
    delivery = a_delivery(DestinationFactory(url=receiver.url))
    shown = run_page_action(admin_client, f"{DELIVERIES}{delivery.pk}/change/", "redeliver", delivery)
    assert shown == ["Sent 1 of the 1 selected delivery: 1 succeeded, 0 failed."]
    assert len(receiver.requests) == 1


def test_retry_from_the_event_page(admin_client, receiver):
    """The event page offers Retry, which sends its deliveries that have not succeeded."""
    delivery = a_delivery(DestinationFactory(url=receiver.url))
    page = f"{EVENTS}{delivery.event_id}/change/"
    shown = run_page_action(admin_client, page, "retry_failed", delivery.event)
    assert shown == ["Sent 1 of the 1 selected delivery: 1 succeeded, 0 failed."]
    assert [r.headers["webhook-id"] for r in receiver.requests] == [str(delivery.delivery_id)]


def test_send_test_event_from_the_account_page_delivers_the_sample(admin_client, receiver):
    """The account page's "Send a test event" ingests the sample and tells each destination's result."""
    destination = DestinationFactory(url=f"{receiver.url}/hook")
    account = destination.account
    [shown] = run_page_action(
        admin_client, f"/admin/accounts/account/{account.pk}/change/", "send_test_event", account
    )
    event = Event.objects.get(account=account)
    [request] = receiver.requests
    assert json.loads(request.body) == TEST_EVENT
    assert request.body == event.body.encode()
    duration = event.deliveries.get().duration_ms
    assert shown == (
        f"Test event {event.event_id} of {account.account_name} sent to 1 destination: "
        f"POST {receiver.url}/hook — succeeded, HTTP 200 in {duration} ms."
    )


def test_send_test_event_says_when_a_destination_failed_and_when_there_is_none(admin_client, receiver):
    """A failing destination's error is in the message; an account without destinations is told so."""
    receiver.respond = lambda handler: (handler.send_response(500), handler.end_headers())
    failing = DestinationFactory(url=receiver.url)
    lonely = AccountFactory()
    shown = run_action(admin_client, "/admin/accounts/account/", "send_test_event", [failing.account, lonely])
    events = {e.account_id: e.event_id for e in Event.objects.all()}
    duration = Delivery.objects.get(destination=failing).duration_ms
    assert sorted(shown) == sorted(
        [
            f"Test event {events[failing.account_id]} of {failing.account.account_name} sent to 1 "
            f"destination: POST {receiver.url} — failed, HTTP 500 in {duration} ms: "
            "destination answered HTTP 500.",
            f"Test event {events[lonely.pk]} of {lonely.account_name} stored; the account has no "
            "destination, so nothing was sent.",
        ]
    )


def test_send_test_event_in_queue_mode_says_it_was_queued(admin_client, receiver, settings, monkeypatch):
    """In queue mode the test event is stored, its delivery pending for the workers, as the message says."""
    settings.DATAPUSHER_DELIVERY_MODE = "queue"
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:9/0"
    monkeypatch.setattr("server.broker.accepting", lambda: False)  # the dispatcher publishes it
    destination = DestinationFactory(url=receiver.url)
    [shown] = run_action(admin_client, ACCOUNTS, "send_test_event", [destination.account])
    event = Event.objects.get(account=destination.account)
    assert shown == (
        f"Test event {event.event_id} of {destination.account.account_name} queued for 1 destination: "
        f"POST {receiver.url} — pending."
    )
    assert receiver.requests == []


def test_send_test_event_when_the_account_is_busy_says_to_try_again(admin_client, settings):
    """An account at its share of waiting ingests gets no test event, and the operator is told why."""
    settings.DATAPUSHER_ACCOUNT_CONCURRENCY = 1
    account = DestinationFactory().account
    account.account_name = "Busy"
    account.save(update_fields=["account_name"])
    holding, release = threading.Event(), threading.Event()

    def another_ingest_waiting():
        with bulkhead.hold(account.pk):
            holding.set()
            release.wait(10)

    waiting = threading.Thread(target=another_ingest_waiting)
    waiting.start()
    try:
        assert holding.wait(10)
        shown = run_action(admin_client, ACCOUNTS, "send_test_event", [account])
    finally:
        release.set()
        waiting.join()
    assert shown == [
        "Busy: no test event sent — its ingests are at their limit in this process; try again in a second."
    ]
    assert not Event.objects.exists()


def test_a_uuid_shaped_cl_x_event_id_is_found_on_events_and_deliveries(admin_client):
    """Senders often use UUIDs as CL-X-EVENT-ID: the search looks for one as an id and as the key."""
    destination = DestinationFactory()
    key = str(uuid.uuid4())
    target = a_delivery(destination, external_id=key)
    a_delivery(destination, external_id=str(uuid.uuid4()))
    assert listed(admin_client.get(EVENTS, {"q": key})) == [target.event]
    assert listed(admin_client.get(DELIVERIES, {"q": key})) == [target]


def action_choices(client, url) -> set[str]:
    form = client.get(url).context["action_form"]  # None: no action at all
    return set() if form is None else {value for value, _ in form.fields["action"].choices if value}


@pytest.fixture
def view_only_client(client, django_user_model):
    """A staff user who may view accounts, destinations and the log, and change nothing."""
    user = django_user_model.objects.create_user(username="support", password="pw-4-support", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(
            codename__in=["view_account", "view_destination", "view_event", "view_delivery", "view_attempt"]
        )
    )
    client.force_login(user)
    return client


def test_staff_who_may_only_view_get_no_action_that_sends_or_shows_a_secret(view_only_client, admin_client):
    """Redeliver, retry, test event, rotations and the secret need change permissions; a superuser
    has them all, a view-only staff user none of them."""
    lists = {EVENTS: {"redeliver", "retry_failed"}, DELIVERIES: {"redeliver", "retry_failed"}}
    lists |= {ACCOUNTS: {"send_test_event", "rotate_token"}, DESTINATIONS: {"show_secret", "rotate_secret"}}
    a_delivery(DestinationFactory())
    for url, sending in lists.items():
        assert sending <= action_choices(admin_client, url)
        assert not sending & action_choices(view_only_client, url)


def test_the_log_cannot_be_deleted_from_the_admin(admin_client):
    """No delete action and no delete page on events, deliveries or attempts (purge_events prunes)."""
    delivery = a_delivery(DestinationFactory())
    attempt = an_attempt(delivery, at=timezone.now())
    for url in (EVENTS, DELIVERIES, ATTEMPTS):
        assert "delete_selected" not in action_choices(admin_client, url)
    for url in (
        f"{EVENTS}{delivery.event_id}/delete/",
        f"{DELIVERIES}{delivery.pk}/delete/",
        f"{ATTEMPTS}{attempt.pk}/delete/",
    ):
        assert admin_client.post(url, {"post": "yes"}).status_code == 403
    assert (Event.objects.count(), Delivery.objects.count(), Attempt.objects.count()) == (1, 1, 1)


def test_redeliver_over_the_maximum_sends_nothing_and_says_why(admin_client, receiver, settings):
    """More deliveries selected than DATAPUSHER_ADMIN_ACTION_MAX_DELIVERIES: nothing is claimed or sent."""
    settings.DATAPUSHER_ADMIN_ACTION_MAX_DELIVERIES = 2
    deliveries = [a_delivery(DestinationFactory(url=receiver.url)) for _ in range(3)]
    shown = run_action(admin_client, DELIVERIES, "redeliver", deliveries)
    assert shown == [
        "Nothing sent: 3 deliveries selected, and an action sends at most 2. Select fewer (a filter, "
        "a date), or use the API's redeliver per event."
    ]
    assert receiver.requests == []
    assert {(d.attempt_count, d.lease_id) for d in Delivery.objects.all()} == {(0, None)}


def test_send_test_event_starts_no_account_it_could_not_finish_in_time(admin_client, receiver, settings):
    """Accounts whose destination accepts and says nothing: the first is tried (and times out), the
    others are not started for want of time, as the message says."""
    settings.DATAPUSHER_ADMIN_ACTION_SECONDS = 1.0
    settings.DATAPUSHER_CONNECT_TIMEOUT = settings.DATAPUSHER_READ_TIMEOUT = 0.3
    receiver.respond = lambda handler: time.sleep(1.5)
    accounts = [DestinationFactory(url=receiver.url, account__account_name=name).account for name in "ABC"]
    shown = run_action(admin_client, ACCOUNTS, "send_test_event", accounts)
    assert len(receiver.requests) == 1
    assert Event.objects.count() == 1
    assert len(shown) == 2
    assert shown[0].startswith("Test event ") and " of A sent to 1 destination: " in shown[0]
    assert shown[1] == "Not sent, the action's time was up: B, C."


def test_send_test_event_keeps_time_for_token_fetches(admin_client, receiver, settings, silent_listener):
    """Accounts with OAuth credentials on their destination: after the first, none starts unless a
    token fetch, the send and a second round after a 401 could all end in the action's time."""
    settings.DATAPUSHER_ADMIN_ACTION_SECONDS = 4.0  # a plain account (0.6 s + 1 s) would fit after A
    settings.DATAPUSHER_CONNECT_TIMEOUT = settings.DATAPUSHER_READ_TIMEOUT = 0.3
    auth = {
        "type": "oauth2_client_credentials",
        "token_url": f"http://127.0.0.1:{silent_listener.port}/token",
        "client_id": "shop",
        "client_secret": secrets.token_urlsafe(16),
    }
    accounts = [
        DestinationFactory(url=receiver.url, auth=auth, headers={}, account__account_name=name).account
        for name in "AB"
    ]
    shown = run_action(admin_client, ACCOUNTS, "send_test_event", accounts)
    assert Event.objects.count() == 1
    assert shown[1] == "Not sent, the action's time was up: B."
    assert receiver.requests == []


def test_a_test_event_is_not_counted_against_the_accounts_rate_limit(
    admin_client, client, receiver, settings
):
    """With one ingest an hour allowed, a test event first leaves the hour's ingest to the sender."""
    settings.DATAPUSHER_INGEST_RATE_LIMIT = "1/hour"
    account = DestinationFactory(url=receiver.url).account
    run_action(admin_client, ACCOUNTS, "send_test_event", [account])
    assert ingest(client, account).status_code == 200
    assert ingest(client, account).status_code == 429
    assert len(receiver.requests) == 2
