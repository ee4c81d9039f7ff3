"""GET /api/destinations/{id}/stats/: a destination's attempts in a window ending now, and its circuit."""

import random
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from accounts.tests.factories import AccountFactory
from destinations.models import Destination
from destinations.serializers import STATS_WINDOW_ERROR
from destinations.tests.factories import DestinationFactory
from server.models import Attempt, Delivery
from server.selectors import destination_stats_get
from server.tests.factories import AttemptFactory, DeliveryFactory
from server.tests.helpers import ingest

pytestmark = pytest.mark.django_db

FAILED = {"status_code": 503, "error": "destination answered HTTP 503"}
SINCE = datetime(2026, 11, 29, 12, 30, tzinfo=UTC)
NOW = datetime(2026, 11, 30, 12, 30, tzinfo=UTC)


def stats_url(destination: Destination) -> str:
    return f"/api/destinations/{destination.pk}/stats/"


def log_attempts(destination: Destination, timed: list[tuple[datetime, int, bool]]) -> None:
    """One delivery to `destination` with an attempt per (started_at, duration in ms, succeeded)."""
    delivery = DeliveryFactory(destination=destination, status=Delivery.Status.SUCCEEDED)
    Attempt.objects.bulk_create(
        AttemptFactory.build(
            delivery=delivery, started_at=started_at, duration_ms=duration, **({} if ok else FAILED)
        )
        for started_at, duration, ok in timed
    )


def test_counts_rate_percentiles_and_last_times_of_a_known_set(api_client):
    """20 attempts of 1..20 ms, the 5 slowest failed: 15 succeeded, rate 0.75, p50 10 ms, p95 19 ms,
    the last success and failure as started; another destination's attempts are not counted."""
    destination, other = DestinationFactory.create_batch(2, consecutive_failures=0)
    now = timezone.now()
    started = [now - timedelta(minutes=30 - n) for n in range(20)]
    order = random.Random(3).sample(range(20), 20)  # logged out of order: the database sorts
    log_attempts(destination, [(started[n], n + 1, n < 15) for n in order])
    log_attempts(other, [(now - timedelta(minutes=1), 5000, False)])
    Destination.objects.filter(pk=destination.pk).update(consecutive_failures=5)
    response = api_client.get(stats_url(destination), {"window": "1h"})
    assert response.status_code == 200
    assert response.json() == {
        "window": "1h",
        "attempts": 20,
        "succeeded": 15,
        "failed": 5,
        "success_rate": 0.75,
        "p50_ms": 10,
        "p95_ms": 19,
        "last_success_at": started[14].isoformat().replace("+00:00", "Z"),
        "last_failure_at": started[19].isoformat().replace("+00:00", "Z"),
        "circuit": {"state": "closed", "consecutive_failures": 5, "next_probe_at": None},
    }


def test_no_attempts_give_zeros_and_nulls(api_client):
    """A destination without attempts in the window: zero counts, no rate, percentiles or times."""
    destination = DestinationFactory()
    log_attempts(destination, [(timezone.now() - timedelta(hours=25), 10, True)])
    response = api_client.get(stats_url(destination))
    assert (response.status_code, response.json()) == (
        200,
        {
            "window": "24h",
            "attempts": 0,
            "succeeded": 0,
            "failed": 0,
            "success_rate": None,
            "p50_ms": None,
            "p95_ms": None,
            "last_success_at": None,
            "last_failure_at": None,
            "circuit": {"state": "closed", "consecutive_failures": 0, "next_probe_at": None},
        },
    )


@pytest.mark.parametrize(
    ("window", "inside", "outside"),
    [
        ("30m", timedelta(minutes=29), timedelta(minutes=31)),
        ("1h", timedelta(minutes=59), timedelta(minutes=61)),
        ("24h", timedelta(hours=23, minutes=59), timedelta(hours=24, minutes=1)),
        ("7d", timedelta(days=6, hours=23), timedelta(days=7, hours=1)),
        ("30d", timedelta(days=29, hours=23), timedelta(days=30, hours=1)),
        ("720h", timedelta(days=29, hours=23), timedelta(days=30, hours=1)),
    ],
)
def test_the_window_reaches_back_as_far_as_asked(api_client, window, inside, outside):
    """An attempt started a little less than `window` ago counts; one a little more ago does not."""
    destination = DestinationFactory()
    now = timezone.now()
    log_attempts(destination, [(now - inside, 40, True), (now - outside, 900, False)])
    body = api_client.get(stats_url(destination), {"window": window}).json()
    assert (body["window"], body["attempts"], body["failed"], body["p95_ms"]) == (window, 1, 0, 40)


def test_the_window_includes_both_ends_and_nothing_outside():
    """destination_stats_get counts attempts started at `since` and at `now`, not a microsecond
    before or after."""
    destination = DestinationFactory()
    micro = timedelta(microseconds=1)
    log_attempts(
        destination,
        [(SINCE - micro, 1, True), (SINCE, 2, False), (NOW, 3, True), (NOW + micro, 4, False)],
    )
    stats = destination_stats_get(destination=destination, since=SINCE, now=NOW)
    assert (stats.attempts, stats.succeeded, stats.p50_ms, stats.p95_ms) == (2, 1, 2, 3)
    assert (stats.last_success_at, stats.last_failure_at, stats.success_rate) == (NOW, SINCE, 0.5)


@pytest.mark.parametrize(
    "window", ["0h", "24", "h", "1w", "-1h", "1.5h", "31d", "721h", "43201m", "1H", "9999999d"]
)
def test_a_bad_window_is_400_naming_the_parameter(api_client, window):
    """A window not a whole positive number of m, h or d up to 30 days is refused with 400 on `window`."""
    response = api_client.get(stats_url(DestinationFactory()), {"window": window})
    assert response.status_code == 400
    assert response.json() == {"window": [STATS_WINDOW_ERROR]}


@pytest.mark.parametrize("query", [{}, {"window": ""}])
def test_without_a_window_it_is_24_hours(api_client, query):
    """No ?window=, or an empty one, is the last 24 hours."""
    destination = DestinationFactory()
    now = timezone.now()
    inside, outside = now - timedelta(hours=23, minutes=59), now - timedelta(hours=24, minutes=1)
    log_attempts(destination, [(inside, 8, True), (outside, 9, True)])
    body = api_client.get(stats_url(destination), query).json()
    assert (body["window"], body["attempts"], body["p50_ms"]) == ("24h", 1, 8)


def test_an_unknown_destination_is_404(api_client):
    """Stats of a destination that does not exist: 404, even with a bad window."""
    assert api_client.get("/api/destinations/987654/stats/", {"window": "1y"}).status_code == 404


@pytest.mark.parametrize("count", [1, 200])
def test_a_constant_number_of_queries(api_client, django_assert_max_num_queries, count):
    """Stats take the same queries for 1 attempt as for 200: the token (two), the destination, the stats."""
    destination = DestinationFactory()
    now = timezone.now()
    log_attempts(destination, [(now - timedelta(seconds=n + 1), n, n % 3 > 0) for n in range(count)])
    with django_assert_max_num_queries(4):
        body = api_client.get(stats_url(destination), {"window": "1h"}).json()
    assert body["attempts"] == count


def test_attempts_the_engine_logs_are_counted(client, api_client, receiver):
    """An ingest delivered to a real receiver (201) shows as one successful attempt."""
    account = AccountFactory()
    destination = DestinationFactory(account=account, url=f"{receiver.url}/in")
    assert ingest(client, account).status_code == 200
    body = api_client.get(stats_url(destination)).json()
    attempt = Attempt.objects.get()
    assert [r.path for r in receiver.requests] == ["/in"]
    assert (body["attempts"], body["succeeded"], body["p50_ms"]) == (1, 1, attempt.duration_ms)
    assert body["last_success_at"] == attempt.started_at.isoformat().replace("+00:00", "Z")


def test_the_schema_documents_the_window_and_the_answer(client):
    """The OpenAPI schema has ?window= and the answer's fields, the circuit's included."""
    schema = client.get("/api/schema/", {"format": "json"}).json()
    operation = schema["paths"]["/api/destinations/{id}/stats/"]["get"]
    assert [(p["name"], p["in"]) for p in operation["parameters"]] == [("id", "path"), ("window", "query")]
    answer = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].split("/")[-1]
    fields = schema["components"]["schemas"][answer]["properties"]
    assert list(fields) == [
        "window",
        "attempts",
        "succeeded",
        "failed",
        "success_rate",
        "p50_ms",
        "p95_ms",
        "last_success_at",
        "last_failure_at",
        "circuit",
    ]
    circuit = schema["components"]["schemas"][fields["circuit"]["allOf"][0]["$ref"].split("/")[-1]]
    assert list(circuit["properties"]) == ["state", "consecutive_failures", "next_probe_at"]
