"""The circuit breaker, against a real local receiver: retryable failures in a row open a
destination's circuit, its deliveries are then held back without an attempt, one is sent as a probe
once the cooldown has passed, and the probe's answer closes the circuit (the backlog due again,
oldest first) or opens it for longer, until the destination is disabled."""

import json
import threading
import time
from datetime import timedelta

import pytest
from django.db import OperationalError
from django.utils import timezone

from destinations.models import CircuitState, Destination
from destinations.tests.factories import DestinationFactory
from server import metrics
from server.models import Attempt, Delivery
from server.services import breaker
from server.services.delivery import delivery_attempt_due
from server.services.dispatch import deliveries_dispatch
from server.tests.conftest import wait_until
from server.tests.helpers import answer, at_once, ingest, pending_delivery

pytestmark = pytest.mark.django_db
BREAKER = "server.services.breaker"
ALERTS = "server.services.alerts"


@pytest.fixture
def breaker_settings(settings):
    """Three failures open a circuit for 60 s (doubling, up to 240 s)."""
    settings.DATAPUSHER_BREAKER_FAILURES = 3
    settings.DATAPUSHER_BREAKER_COOLDOWN = 60
    settings.DATAPUSHER_BREAKER_COOLDOWN_MAX = 240
    return settings


@pytest.fixture
def destination(receiver, breaker_settings):
    return DestinationFactory(url=f"{receiver.url}/in", headers={})


def _stored(destination: Destination) -> Destination:
    """The destination as stored now (the fixture's keeps its account's token for ingests)."""
    return Destination.objects.get(pk=destination.pk)


def _ingests(client, destination, count: int, start: int = 0) -> list[dict]:
    """`count` ingests of {"n": i}; each one's delivery as the ingest's answer shows it."""
    return [
        ingest(client, destination.account, json.dumps({"n": n})).json()["deliveries"][0]
        for n in range(start, start + count)
    ]


def _opened(client, destination, receiver) -> Destination:
    """Three ingests answered 500: the circuit is open."""
    receiver.respond = answer(500)
    _ingests(client, destination, 3)
    stored = _stored(destination)
    assert stored.circuit_state == CircuitState.OPEN
    return stored


def _probe_due(destination: Destination) -> None:
    """The cooldown has passed."""
    Destination.objects.filter(pk=destination.pk).update(next_probe_at=timezone.now() - timedelta(seconds=1))


def test_retryable_failures_in_a_row_open_the_circuit(client, destination, receiver, json_log):
    """Three 500s open it: the fourth ingest sends nothing, its delivery pending with the reason,
    no attempt spent; the destination shows the circuit; one alert line says so."""
    before = timezone.now()
    receiver.respond = answer(500)
    assert [d["status"] for d in _ingests(client, destination, 3)] == ["failed"] * 3
    held = _ingests(client, destination, 1, start=3)[0]
    assert len(receiver.requests) == 3
    stored = _stored(destination)
    assert stored.circuit_state == "open"
    assert stored.consecutive_failures == 3
    assert stored.circuit_trips == 1
    probe_at = stored.next_probe_at
    assert before + timedelta(seconds=60) <= probe_at <= timezone.now() + timedelta(seconds=60)
    assert held["status"] == "pending"
    assert held["status_code"] is None
    assert held["error"] == (
        f"circuit open: 3 failures in a row; next probe at {probe_at.isoformat(timespec='seconds')}; "
        "still pending"
    )
    stored = Delivery.objects.get(delivery_id=held["delivery_id"])
    assert stored.next_attempt_at == probe_at + timedelta(seconds=240)
    assert (stored.lease_id, stored.attempt_count, stored.attempts.count()) == (None, 0, 0)
    opened = [line for line in json_log.lines(ALERTS) if line["message"] == "destination circuit opened"]
    assert [(line["alert"], line["consecutive_failures"], line["status_code"]) for line in opened] == [
        ("circuit_opened", 3, 500)
    ]


def test_the_circuit_is_in_the_destination_api(api_client, client, destination, receiver):
    """GET /api/destinations/{id}/ carries the circuit: state, failures in a row, next probe."""
    destination = _opened(client, destination, receiver)
    body = api_client.get(f"/api/destinations/{destination.pk}/").json()
    assert body["circuit"] == {
        "state": "open",
        "consecutive_failures": 3,
        "next_probe_at": destination.next_probe_at.isoformat().replace("+00:00", "Z"),
    }


@pytest.mark.parametrize(
    "respond",
    [answer(400), answer(404), answer(429, headers={"Retry-After": "5"})],
    ids=["400", "404", "429 with Retry-After"],
)
def test_answers_that_are_not_retryable_failures_do_not_count(client, destination, receiver, respond):
    """Permanent 4xx and a throttling 429 with Retry-After: five in a row leave the circuit closed."""
    receiver.respond = respond
    _ingests(client, destination, 5)
    assert len(receiver.requests) == 5
    stored = _stored(destination)
    assert (stored.circuit_state, stored.consecutive_failures) == ("closed", 0)


def test_a_success_resets_the_count(client, destination, receiver):
    """500, 500, 200, 500, 500: never three in a row, the circuit stays closed."""
    answers = iter([500, 500, 200, 500, 500])
    receiver.respond = lambda handler: answer(next(answers))(handler)
    _ingests(client, destination, 5)
    stored = _stored(destination)
    assert (stored.circuit_state, stored.consecutive_failures, len(receiver.requests)) == (
        "closed",
        2,
        5,
    )


def test_the_breaker_can_be_turned_off(client, destination, receiver, settings):
    """DATAPUSHER_BREAKER_FAILURES=0: ten 500s in a row are all sent, the circuit stays closed."""
    settings.DATAPUSHER_BREAKER_FAILURES = 0
    receiver.respond = answer(500)
    _ingests(client, destination, 10)
    stored = _stored(destination)
    assert (stored.circuit_state, stored.consecutive_failures, len(receiver.requests)) == (
        "closed",
        10,
        10,
    )


def test_a_successful_probe_closes_the_circuit_and_the_backlog_is_due_oldest_first(
    client, destination, receiver
):
    """Once the cooldown is over, the next ingest's delivery is the probe: one request; its 200
    closes the circuit and makes every held delivery due as created, its error cleared."""
    _opened(client, destination, receiver)
    held = _ingests(client, destination, 3, start=3)
    _probe_due(destination)
    receiver.respond = answer(200)
    probe = _ingests(client, destination, 1, start=6)[0]
    assert (probe["status"], len(receiver.requests)) == ("succeeded", 4)
    assert json.loads(receiver.requests[-1].body) == {"n": 6}
    stored = _stored(destination)
    assert (stored.circuit_state, stored.consecutive_failures, stored.next_probe_at) == (
        "closed",
        0,
        None,
    )
    backlog = Delivery.objects.filter(delivery_id__in=[d["delivery_id"] for d in held]).order_by("id")
    assert [(d.status, d.error, d.next_attempt_at, d.attempt_count) for d in backlog] == [
        ("pending", "", d.created_at, 0) for d in backlog
    ]


def test_a_failed_probe_reopens_the_circuit_for_twice_as_long(client, destination, receiver):
    """The probe answered 503: open again, second trip, the next probe 120 s later; then 240 s, the
    cap, on the third. Each probe stays pending, held back again, with no attempt of its schedule
    spent (its attempt logged)."""
    _opened(client, destination, receiver)
    for trips, wait in [(2, 120), (3, 240), (4, 240)]:
        _probe_due(destination)
        before = timezone.now()
        receiver.respond = answer(503)
        probe = _ingests(client, destination, 1)[0]
        assert (probe["status"], probe["status_code"], probe["error"]) == (
            "pending",
            503,
            "circuit open: the probe failed (destination answered HTTP 503); still pending",
        )
        stored = Delivery.objects.get(delivery_id=probe["delivery_id"])
        assert (stored.attempt_count, stored.attempts.get().error) == (0, "destination answered HTTP 503")
        stored = _stored(destination)
        assert (stored.circuit_state, stored.circuit_trips) == ("open", trips)
        assert before + timedelta(seconds=wait) <= stored.next_probe_at
        assert stored.next_probe_at <= timezone.now() + timedelta(seconds=wait)
    assert len(receiver.requests) == 3 + 3


def test_a_probe_answered_4xx_closes_the_circuit(client, destination, receiver):
    """A permanent 4xx is an answer: the receiver is up, the circuit closes (the delivery fails)."""
    _opened(client, destination, receiver)
    _probe_due(destination)
    receiver.respond = answer(422)
    assert _ingests(client, destination, 1)[0]["status"] == "failed"
    stored = _stored(destination)
    assert stored.circuit_state == "closed"


def test_open_too_long_the_destination_is_disabled(client, destination, receiver, settings, json_log):
    """A probe failing DATAPUSHER_DISABLE_AFTER after the circuit opened disables the destination:
    its held deliveries paused with the reason, the circuit closed, the destination_disabled alert."""
    settings.DATAPUSHER_DISABLE_AFTER = 3600
    _opened(client, destination, receiver)
    held = _ingests(client, destination, 2, start=3)
    opened_at = timezone.now() - timedelta(seconds=3601)
    Destination.objects.filter(pk=destination.pk).update(circuit_opened_at=opened_at)
    _probe_due(destination)
    _ingests(client, destination, 1, start=5)
    stored = _stored(destination)
    reason = f"circuit open since {opened_at.isoformat(timespec='seconds')}"
    assert (stored.enabled, stored.disabled_reason, stored.circuit_state) == (
        False,
        reason,
        "closed",
    )
    backlog = Delivery.objects.filter(delivery_id__in=[d["delivery_id"] for d in held])
    assert {(d.status, d.error, d.next_attempt_at) for d in backlog} == {
        ("paused", f"the destination is disabled ({reason})", None)
    }
    disabled = [line for line in json_log.lines(ALERTS) if line["message"] == "destination disabled"]
    assert [(line["alert"], line["reason"]) for line in disabled] == [("destination_disabled", reason)]


def test_resume_closes_the_circuit(api_client, client, destination, receiver):
    """POST /resume/ on a destination with an open circuit closes it and sends what it held back."""
    _opened(client, destination, receiver)
    _ingests(client, destination, 2, start=3)
    receiver.respond = answer(200)
    body = api_client.post(f"/api/destinations/{destination.pk}/resume/").json()
    assert (body["resumed"], body["sent"], body["succeeded"]) == (2, 2, 2)
    assert sorted(json.loads(r.body)["n"] for r in receiver.requests[3:]) == [3, 4]
    stored = _stored(destination)
    assert stored.circuit_state == "closed"


def test_a_recovery_obeys_an_open_circuit(api_client, client, destination, receiver):
    """Recovering the failed deliveries of a destination whose circuit is open sends nothing: they
    are held back, pending, with the circuit's reason."""
    _opened(client, destination, receiver)
    now = timezone.now()
    body = {"since": (now - timedelta(hours=1)).isoformat(), "until": now.isoformat(), "dry_run": False}
    recovered = api_client.post(f"/api/destinations/{destination.pk}/recover/", body, format="json")
    assert (recovered.status_code, recovered.json()["count"]) == (202, 3)
    assert len(receiver.requests) == 3
    assert {(d.status, d.error[: len(breaker.CIRCUIT_OPEN)]) for d in Delivery.objects.all()} == {
        ("pending", breaker.CIRCUIT_OPEN)
    }


def test_a_probe_put_off_by_retry_after_keeps_the_circuit_open_until_then(
    client, destination, receiver, broker
):
    """With retries on, a probe answered 429 with Retry-After: 30 is put off 30 s with no attempt
    spent, the circuit stays open with its next probe then, and what it held stays held."""
    _opened(client, destination, receiver)
    held = _ingests(client, destination, 2, start=3)
    _probe_due(destination)
    receiver.respond = answer(429, headers={"Retry-After": "30"})
    before = timezone.now()
    probe = Delivery.objects.get(delivery_id=_ingests(client, destination, 1, start=5)[0]["delivery_id"])
    stored = _stored(destination)
    assert (probe.status, probe.attempt_count, stored.circuit_state, stored.circuit_trips) == (
        "pending",
        0,
        "open",
        1,
    )
    assert before + timedelta(seconds=30) <= probe.next_attempt_at <= timezone.now() + timedelta(seconds=30)
    assert stored.next_probe_at == probe.next_attempt_at
    backlog = Delivery.objects.filter(delivery_id__in=[d["delivery_id"] for d in held])
    assert all(d.error.startswith(breaker.CIRCUIT_OPEN) for d in backlog)
    assert all(d.next_attempt_at > timezone.now() + timedelta(seconds=200) for d in backlog)


def test_closing_releases_only_what_the_circuit_held(client, destination, receiver, broker):
    """A retry put off by its schedule (before the circuit opened) keeps its time when a probe
    closes the circuit; the held deliveries are due as created."""
    _opened(client, destination, receiver)
    retrying = Delivery.objects.order_by("id").first()
    assert (retrying.status, retrying.error) == ("pending", "destination answered HTTP 500")
    held = Delivery.objects.get(delivery_id=_ingests(client, destination, 1, start=3)[0]["delivery_id"])
    _probe_due(destination)
    receiver.respond = answer(200)
    _ingests(client, destination, 1, start=4)
    assert Delivery.objects.get(pk=retrying.pk).next_attempt_at == retrying.next_attempt_at
    held.refresh_from_db()
    assert (held.status, held.error, held.next_attempt_at) == ("pending", "", held.created_at)


def test_a_success_seen_after_failures_closes_the_circuit(client, destination, receiver):
    """A send begun before the circuit opened, by a sender that had seen failures, succeeds after:
    the circuit closes (not only the probe's success does)."""
    receiver.respond = answer(200)
    delivery = pending_delivery(destination=destination)
    Destination.objects.filter(pk=destination.pk).update(consecutive_failures=2)
    delivery.destination = _stored(destination)  # read with 2 failures, the circuit closed
    _opened(client, destination, receiver)
    breaker.attempts_count(
        attempts=[breaker.Counted(delivery=delivery, succeeded=True, failed=False, probe=False)]
    )
    stored = _stored(destination)
    assert (stored.circuit_state, stored.consecutive_failures) == ("closed", 0)


def test_a_probe_not_sent_is_given_back_only_by_its_claimer(breaker_settings):
    """A probe claimed but not sent (no free slot) reopens the circuit, its probe due now; a claim
    that is no longer the circuit's (claimed again since) gives back nothing."""
    destination = DestinationFactory(
        circuit_state=CircuitState.OPEN, next_probe_at=timezone.now() - timedelta(seconds=1), circuit_trips=1
    )
    first, second = pending_delivery(destination=destination), pending_delivery(destination=destination)
    first.destination, second.destination = _stored(destination), _stored(destination)  # two senders
    now = timezone.now()
    breaker.probes_claim(deliveries=[first], now=now, lease_until=now - timedelta(milliseconds=1))
    later = timezone.now()
    breaker.probes_claim(deliveries=[second], now=later, lease_until=later + timedelta(seconds=30))
    breaker.probes_release(deliveries=[first])
    assert _stored(destination).circuit_state == "half_open"
    breaker.probes_release(deliveries=[second])
    stored = _stored(destination)
    assert (stored.circuit_state, stored.next_probe_at <= timezone.now()) == ("open", True)


def test_with_the_breaker_off_an_open_circuit_holds_nothing(client, destination, receiver, settings):
    """DATAPUSHER_BREAKER_FAILURES=0 with a circuit left open: the ingest sends, and the success
    closes the circuit."""
    _opened(client, destination, receiver)
    settings.DATAPUSHER_BREAKER_FAILURES = 0
    receiver.respond = answer(200)
    assert _ingests(client, destination, 1, start=3)[0]["status"] == "succeeded"
    assert _stored(destination).circuit_state == "closed"


def test_a_probe_answered_410_disables_and_pauses_the_backlog(client, destination, receiver):
    """The probe's 410 Gone disables the destination: the circuit closes and what it held is paused
    (kept for the resume), not sent."""
    _opened(client, destination, receiver)
    held = _ingests(client, destination, 2, start=3)
    _probe_due(destination)
    receiver.respond = answer(410)
    _ingests(client, destination, 1, start=5)
    stored = _stored(destination)
    assert (stored.enabled, stored.circuit_state, len(receiver.requests)) == (False, "closed", 4)
    backlog = Delivery.objects.filter(delivery_id__in=[d["delivery_id"] for d in held])
    assert {(d.status, d.error) for d in backlog} == {
        ("paused", "the destination is disabled (the destination answered 410 Gone)")
    }


def test_a_delivery_held_while_its_circuit_closed_is_released(breaker_settings):
    """A delivery held back by a circuit read open, written after the circuit closed: settling it
    makes it due as created."""
    destination = DestinationFactory()  # closed
    delivery = pending_delivery(
        destination=destination,
        error="circuit open: 10 failures in a row; next probe at …; still pending",
        next_attempt_at=timezone.now() + timedelta(hours=1),
    )
    breaker.held_settle(deliveries=[delivery])
    delivery.refresh_from_db()
    assert (delivery.error, delivery.next_attempt_at) == ("", delivery.created_at)


def test_the_cooldown_stops_at_its_cap_however_many_trips(breaker_settings):
    """Cooldowns double up to DATAPUSHER_BREAKER_COOLDOWN_MAX; thousands of trips do not overflow."""
    assert [breaker.cooldown(trips=t).total_seconds() for t in (1, 2, 3, 4, 2000)] == [60, 120, 240, 240, 240]


@pytest.mark.django_db(transaction=True)  # each thread commits on its own connection
def test_only_one_of_concurrent_senders_sends_the_probe(concurrent_writers, breaker_settings):
    """Eight senders find the probe due at once: exactly one claims it."""
    destination = DestinationFactory(
        circuit_state=CircuitState.OPEN, next_probe_at=timezone.now() - timedelta(seconds=1), circuit_trips=1
    )
    deliveries = iter([pending_delivery(destination=destination) for _ in range(8)])

    def claim() -> set[int]:
        delivery = next(deliveries)
        delivery.destination = Destination.objects.get(pk=destination.pk)
        now = timezone.now()
        return breaker.probes_claim(deliveries=[delivery], now=now, lease_until=now + timedelta(seconds=30))

    claimed = [pk for probes in at_once(claim, times=8) for pk in probes]
    assert len(claimed) == 1
    assert Destination.objects.get(pk=destination.pk).circuit_state == "half_open"


def test_a_probe_whose_sender_died_is_claimed_again(breaker_settings):
    """Half-open past its prober's lease: the next sender claims the probe."""
    destination = DestinationFactory(
        circuit_state=CircuitState.HALF_OPEN, next_probe_at=timezone.now() - timedelta(seconds=1)
    )
    delivery = pending_delivery(destination=destination)
    now = timezone.now()
    assert breaker.probes_claim(deliveries=[delivery], now=now, lease_until=now + timedelta(seconds=30)) == {
        delivery.pk
    }


def test_the_dispatcher_makes_the_oldest_held_delivery_due_for_the_probe(
    client, destination, receiver, published
):
    """With the probe due, a dispatcher round makes the oldest held delivery due now and publishes
    it; the others stay held."""
    _opened(client, destination, receiver)
    held = _ingests(client, destination, 3, start=3)
    _probe_due(destination)
    deliveries_dispatch(limit=100)
    oldest = Delivery.objects.get(delivery_id=held[0]["delivery_id"])
    assert published == [oldest.pk]
    later = Delivery.objects.filter(delivery_id__in=[d["delivery_id"] for d in held[1:]])
    assert all(d.next_attempt_at > timezone.now() + timedelta(seconds=200) for d in later)


def test_a_worker_holds_back_a_due_retry_while_the_circuit_is_open(client, destination, receiver, settings):
    """A retry falling due while the circuit is open is held, not sent, no attempt spent."""
    _opened(client, destination, receiver)
    delivery = pending_delivery(destination=destination, attempt_count=1)
    delivery_attempt_due(delivery_pk=delivery.pk)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempt_count, len(receiver.requests)) == ("pending", 1, 3)
    assert delivery.error.startswith("circuit open: 3 failures in a row")


@pytest.mark.django_db(transaction=True)  # each thread commits on its own connection
def test_concurrent_failures_are_all_counted_and_alert_once(concurrent_writers, settings, caplog):
    """Eight senders counting a failure each at once: the count is 8, one of them alerts (at 4) and
    one opens the circuit (reading the count at 6 or more)."""
    settings.DATAPUSHER_ALERT_AFTER_FAILURES = 4
    settings.DATAPUSHER_BREAKER_FAILURES = 6
    destination = DestinationFactory()
    deliveries = iter([pending_delivery(destination=destination) for _ in range(8)])
    at_once(
        lambda: breaker.attempts_count(
            attempts=[breaker.Counted(delivery=next(deliveries), succeeded=False, failed=True, probe=False)]
        ),
        times=8,
    )
    assert Destination.objects.get(pk=destination.pk).consecutive_failures == 8
    alerted = [r for r in caplog.records if r.name == ALERTS]
    failing = [r.consecutive_failures for r in alerted if r.getMessage() == "destination keeps failing"]
    opened = [r.consecutive_failures for r in alerted if r.getMessage() == "destination circuit opened"]
    assert failing == [4]
    # Every sender that reads the count at 6 or more with the circuit closed tries to open it; one does.
    assert len(opened) == 1
    assert 6 <= opened[0] <= 8
    assert Destination.objects.get(pk=destination.pk).circuit_state == "open"


def test_a_count_that_cannot_be_written_fails_nothing(client, receiver, json_log, monkeypatch):
    """The database refuses the count's UPDATE: the ingest still answers 200 with the delivery's
    outcome, recorded, and the count's failure is a WARNING."""

    class Unavailable:
        class objects:
            @staticmethod
            def filter(**_):
                raise OperationalError("database is locked")

    monkeypatch.setattr(breaker, "Destination", Unavailable)
    receiver.respond = answer(500)
    destination = DestinationFactory(url=f"{receiver.url}/in")
    response = ingest(client, destination.account)
    assert (response.status_code, response.json()["deliveries"][0]["status"]) == (200, "failed")
    assert Delivery.objects.get().status == "failed"
    warnings = [line["message"] for line in json_log.lines(BREAKER)]
    assert warnings == ["destination failure counts not updated: OperationalError"]


def test_metrics_count_circuits(client, destination, receiver, settings):
    """/metrics: the open circuits now, and the transitions counted."""
    opened_before = metrics.CIRCUITS_MOVED.labels(to="open")._value.get()
    _opened(client, destination, receiver)
    settings.DATAPUSHER_METRICS_TOKEN = "scrape"
    text = client.get("/metrics", headers={"Authorization": "Bearer scrape"}).content.decode()
    assert 'datapusher_destination_circuits{state="open"} 1.0' in text
    assert 'datapusher_destination_circuits{state="half_open"} 0.0' in text
    assert metrics.CIRCUITS_MOVED.labels(to="open")._value.get() == opened_before + 1


def test_the_admin_shows_the_circuit(admin_client, client, destination, receiver):
    """The destination list shows its circuit's state and failures in a row, and filters by state."""
    destination = _opened(client, destination, receiver)
    page = admin_client.get("/admin/destinations/destination/").content.decode()
    probe_at = destination.next_probe_at.isoformat(timespec="seconds")
    assert f"open, 3 failures in a row, next probe {probe_at}" in page
    closed_one = DestinationFactory()
    by_state = {
        state: admin_client.get("/admin/destinations/destination/", {"circuit_state__exact": state})
        for state in ("open", "closed")
    }
    assert [d.pk for d in by_state["open"].context["cl"].result_list] == [destination.pk]
    assert [d.pk for d in by_state["closed"].context["cl"].result_list] == [closed_one.pk]


@pytest.mark.django_db(transaction=True)
def test_a_worker_holds_back_then_drains_the_backlog_after_a_probe(client, worker, dispatcher, receiver):
    """PostgreSQL, a real worker and dispatcher, 3 failures to open, 1 s cooldown: while the receiver
    answers 503 it gets 3 requests and the probes; once it is up, every delivery exactly once."""
    overrides = {
        "DATAPUSHER_BREAKER_FAILURES": "3",
        "DATAPUSHER_BREAKER_COOLDOWN": "1",
        "DATAPUSHER_BREAKER_COOLDOWN_MAX": "2",
        # Each first failure's retry falls due while the circuit is open: held, then released with the rest.
        "DATAPUSHER_RETRY_SCHEDULE": "1",
    }
    worker(**overrides)
    dispatcher(**overrides)
    down = threading.Event()
    down.set()
    receiver.respond = lambda handler: answer(503 if down.is_set() else 200)(handler)
    destination = DestinationFactory(url=f"{receiver.url}/in", headers={})
    for n in range(12):
        ingest(client, destination.account, json.dumps({"n": n}))
        time.sleep(0.2)
    wait_until(lambda: Destination.objects.get().circuit_trips >= 3, 30, "two probes failed")
    down.clear()
    with receiver.lock:
        while_down, trips = len(receiver.requests), Destination.objects.get().circuit_trips
    assert 3 + (trips - 1) <= while_down <= 3 + trips  # the failures, the failed probes, one under way
    wait_until(lambda: Delivery.objects.filter(status="succeeded").count() == 12, 30, "all delivered")
    answered_200 = Attempt.objects.filter(status_code=200)
    assert (answered_200.count(), answered_200.values("delivery").distinct().count()) == (12, 12)
    assert Destination.objects.get().circuit_state == "closed"
