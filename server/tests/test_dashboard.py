"""The operator dashboard: its figures (server/selectors.py: dashboard_get), its chart and its page."""

import random
import re
from datetime import UTC, datetime, timedelta

import pytest
from django.db import OperationalError
from django.test.html import parse_html

from datapusher.middleware import DATABASE_RETRY_AFTER_SECONDS
from destinations.tests.factories import DestinationFactory
from server.models import Attempt, Delivery
from server.pages import deliveries_chart
from server.selectors import DestinationStats, HourCounts, dashboard_get
from server.tests.factories import AttemptFactory, DeliveryFactory, EventFactory

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 30, 12, 30, tzinfo=UTC)
# The start of the clock hour 23 hours before NOW's: 24 clock hours in all.
SINCE = datetime(2026, 11, 29, 13, 0, tzinfo=UTC)
FAILED = {"status_code": 500, "error": "destination answered HTTP 500"}


def attempts(destination, durations, *, failed=0, started_at=SINCE):
    """One delivery to `destination`, created at `started_at` and succeeded in the end, with an
    attempt per duration (in ms), the first `failed` failing."""
    delivery = DeliveryFactory(
        destination=destination, created_at=started_at, status=Delivery.Status.SUCCEEDED
    )
    Attempt.objects.bulk_create(
        AttemptFactory.build(
            delivery=delivery, duration_ms=duration, started_at=started_at, **(FAILED if n < failed else {})
        )
        for n, duration in enumerate(durations)
    )
    return delivery


def has_html(page: bytes, fragment: str) -> bool:
    """`fragment` appears in `page`, compared as HTML (whitespace and attribute order aside)."""
    return parse_html(page.decode()).count(parse_html(fragment)) == 1


@pytest.fixture
def four_destinations():
    """Destinations with known durations: 1..100 ms (20 failed), 30/10/20 (all failed), one 7 ms
    (and an older 99999 ms one, before the window), 1..20 ms."""
    hundred, three, one, twenty = DestinationFactory.create_batch(4)
    attempts(hundred, random.Random(1).sample(range(1, 101), 100), failed=20)
    attempts(three, [30, 10, 20], failed=3)
    attempts(one, [7])
    attempts(one, [99999], failed=1, started_at=SINCE - timedelta(seconds=1))
    attempts(twenty, range(1, 21), started_at=NOW)
    return hundred, three, one, twenty


def stats(destination, *, attempts, failed, p50, p95, last_success, last_failure):
    return DestinationStats(
        destination_id=destination.pk,
        url=destination.url,
        account_name=destination.account.account_name,
        attempts=attempts,
        failed=failed,
        p50_ms=p50,
        p95_ms=p95,
        last_success_at=last_success,
        last_failure_at=last_failure,
    )


def test_events_received_and_processed_in_the_window():
    """Events received from the window's start to now are counted, and those processed among them."""
    EventFactory(received_at=SINCE, processed_at=SINCE)
    EventFactory(received_at=NOW - timedelta(minutes=1))
    EventFactory(received_at=SINCE - timedelta(seconds=1), processed_at=SINCE)
    EventFactory(received_at=NOW + timedelta(seconds=1), processed_at=NOW + timedelta(seconds=1))
    dashboard = dashboard_get(now=NOW)
    assert (dashboard.since, dashboard.events_received, dashboard.events_processed) == (SINCE, 2, 1)


def test_deliveries_per_clock_hour_and_status():
    """Deliveries created in the window are counted per clock hour and status, 24 hours in all."""
    DeliveryFactory.create_batch(2, created_at=SINCE, status=Delivery.Status.SUCCEEDED)
    DeliveryFactory(created_at=SINCE + timedelta(hours=5, minutes=59), status=Delivery.Status.FAILED)
    DeliveryFactory(created_at=NOW, status=Delivery.Status.PENDING)
    DeliveryFactory(created_at=NOW, status=Delivery.Status.PAUSED)
    DeliveryFactory(created_at=SINCE - timedelta(seconds=1), status=Delivery.Status.SUCCEEDED)
    dashboard = dashboard_get(now=NOW)
    expected = [
        HourCounts(start=SINCE + timedelta(hours=n), pending=0, succeeded=0, failed=0, paused=0)
        for n in range(24)
    ]
    expected[0] = HourCounts(start=SINCE, pending=0, succeeded=2, failed=0, paused=0)
    expected[5] = HourCounts(start=SINCE + timedelta(hours=5), pending=0, succeeded=0, failed=1, paused=0)
    expected[23] = HourCounts(
        start=datetime(2026, 11, 30, 12, tzinfo=UTC), pending=1, succeeded=0, failed=0, paused=1
    )
    assert dashboard.hours == expected
    assert dashboard.deliveries == {"pending": 1, "succeeded": 2, "failed": 1, "paused": 1}


def test_percentiles_and_failures_per_destination(four_destinations):
    """Each destination's attempts in the window, failed ones, the nearest-rank p50 and p95 of their
    durations and the last success and failure; attempts before the window and to deleted
    destinations are left out."""
    hundred, three, one, twenty = four_destinations
    orphan = attempts(DestinationFactory(), [5000])
    orphan.destination.delete()
    dashboard = dashboard_get(now=NOW)
    assert sorted(dashboard.destinations, key=lambda d: d.destination_id) == [
        stats(hundred, attempts=100, failed=20, p50=50, p95=95, last_success=SINCE, last_failure=SINCE),
        stats(three, attempts=3, failed=3, p50=20, p95=30, last_success=None, last_failure=SINCE),
        stats(one, attempts=1, failed=0, p50=7, p95=7, last_success=SINCE, last_failure=None),
        stats(twenty, attempts=20, failed=0, p50=10, p95=19, last_success=NOW, last_failure=None),
    ]
    assert [d.failure_percent for d in sorted(dashboard.destinations, key=lambda d: d.destination_id)] == [
        20.0,
        100.0,
        0.0,
        0.0,
    ]


def test_an_attempt_without_a_2xx_answer_is_a_failure():
    """2xx answers succeeded; a 3xx, a 4xx, a 5xx and no answer at all (a timeout) are failures."""
    delivery = DeliveryFactory(created_at=SINCE)
    answers = [(200, ""), (204, ""), (299, ""), (302, "HTTP 302"), (429, "HTTP 429"), (503, "HTTP 503")]
    for status_code, error in [*answers, (None, "timed out")]:
        AttemptFactory(delivery=delivery, status_code=status_code, error=error, started_at=SINCE)
    [found] = dashboard_get(now=NOW).destinations
    assert (found.attempts, found.failed) == (7, 4)


def test_equal_durations_give_that_duration():
    """Ties in duration do not shift the percentiles: four 5 ms attempts have p50 = p95 = 5 ms."""
    destination = DestinationFactory()
    attempts(destination, [5, 5, 5, 5])
    [found] = dashboard_get(now=NOW).destinations
    assert (found.p50_ms, found.p95_ms) == (5, 5)


def test_slowest_by_p95_and_most_failing_by_rate(four_destinations):
    """Slowest: by p95, highest first. Most failing: by failure rate, only those with failures."""
    hundred, three, one, twenty = four_destinations
    dashboard = dashboard_get(now=NOW)
    assert [d.destination_id for d in dashboard.slowest] == [hundred.pk, three.pk, twenty.pk, one.pk]
    assert [d.destination_id for d in dashboard.most_failing] == [three.pk, hundred.pk]


def test_destination_urls_are_shown_without_credentials():
    """A destination URL's user:password@ and query string are not shown."""
    destination = DestinationFactory(url="https://user:pw@hooks.example.com/in?key=secret")
    attempts(destination, [1])
    [found] = dashboard_get(now=NOW).destinations
    assert found.url == "https://hooks.example.com/in"


def test_backlog_is_every_pending_delivery_and_the_oldest_age():
    """The backlog counts pending deliveries of any age; its age is the oldest one's, at `now`."""
    DeliveryFactory(created_at=NOW - timedelta(hours=30), status=Delivery.Status.PENDING)
    DeliveryFactory(created_at=NOW - timedelta(minutes=10), status=Delivery.Status.PENDING)
    DeliveryFactory(created_at=NOW - timedelta(hours=40), status=Delivery.Status.FAILED)
    DeliveryFactory(created_at=NOW - timedelta(hours=50), status=Delivery.Status.SUCCEEDED)
    dashboard = dashboard_get(now=NOW)
    assert (dashboard.backlog, dashboard.oldest_pending_age) == (2, timedelta(hours=30))


def test_an_empty_log():
    """With nothing logged: zeros, no destinations, no backlog age."""
    dashboard = dashboard_get(now=NOW)
    assert (dashboard.events_received, dashboard.deliveries, dashboard.destinations) == (
        0,
        {"pending": 0, "succeeded": 0, "failed": 0, "paused": 0},
        [],
    )
    assert (dashboard.backlog, dashboard.oldest_pending_age) == (0, None)


@pytest.mark.parametrize("destinations", [1, 50])
def test_four_queries_whatever_the_number_of_destinations(destinations, django_assert_num_queries):
    """dashboard_get runs four queries for 1 destination as for 50."""
    for destination in DestinationFactory.create_batch(destinations):
        attempts(destination, [10, 20], failed=1, started_at=NOW - timedelta(hours=1))
    with django_assert_num_queries(4):
        dashboard = dashboard_get(now=NOW)
    assert len(dashboard.destinations) == destinations


@pytest.mark.parametrize("destinations", [1, 50])
def test_the_page_runs_a_bounded_number_of_queries(destinations, admin_client, django_assert_max_num_queries):
    """The dashboard page runs at most 6 queries (session, user, the figures) for 1 destination as for 50."""
    for destination in DestinationFactory.create_batch(destinations):
        attempts(destination, [10, 20], failed=1, started_at=NOW - timedelta(hours=1))
    with django_assert_max_num_queries(6):
        response = admin_client.get("/admin/dashboard/")
    assert response.status_code == 200


def test_chart_bars_are_stacked_and_scaled_to_the_busiest_hour():
    """Each hour's bar stacks succeeded, failed, pending from the bottom; the busiest hour is full height."""
    start = SINCE
    hours = [
        HourCounts(start=start, pending=0, succeeded=4, failed=0, paused=0),
        HourCounts(start=start + timedelta(hours=1), pending=2, succeeded=1, failed=1, paused=0),
        HourCounts(start=start + timedelta(hours=2), pending=0, succeeded=0, failed=0, paused=0),
    ]
    chart = deliveries_chart(hours=hours)
    assert (chart.peak, chart.slot, chart.bar_width) == (4, 240.0, 180.0)
    assert [(bar.x, bar.label) for bar in chart.bars] == [(0.0, "13:00"), (240.0, ""), (480.0, "")]
    assert [[(s.status, s.count, s.y, s.height) for s in bar.segments] for bar in chart.bars] == [
        [("succeeded", 4, 0.0, 160.0)],
        [("succeeded", 1, 120.0, 40.0), ("failed", 1, 80.0, 40.0), ("pending", 2, 0.0, 80.0)],
        [],
    ]


def test_anonymous_users_are_sent_to_the_admin_login(client):
    """The dashboard redirects an anonymous user to the admin's login, coming back after."""
    response = client.get("/admin/dashboard/")
    assert (response.status_code, response["Location"]) == (302, "/admin/login/?next=/admin/dashboard/")


def test_users_who_are_not_staff_are_sent_to_the_admin_login(client, django_user_model):
    """A signed-in user who is not staff is sent to the admin's login too."""
    client.force_login(django_user_model.objects.create_user(username="member", password="x"))
    response = client.get("/admin/dashboard/")
    assert (response.status_code, response["Location"]) == (302, "/admin/login/?next=/admin/dashboard/")


def test_the_dashboard_answers_only_get_and_head(admin_client):
    """POST to the dashboard is 405."""
    assert admin_client.post("/admin/dashboard/").status_code == 405


def test_the_page_shows_the_figures(admin_client, four_destinations, monkeypatch):
    """Staff see the selector's figures in the admin's look: counts, backlog, rates, percentiles, chart."""
    monkeypatch.setattr("server.pages.timezone.now", lambda: NOW)
    hundred, three, _, _ = four_destinations
    DeliveryFactory(created_at=NOW - timedelta(hours=30), status=Delivery.Status.PENDING)
    response = admin_client.get("/admin/dashboard/")
    page = response.content
    assert response.status_code == 200
    assert b"<h1>Dashboard</h1>" in page
    assert has_html(
        page, '<tr id="summary-deliveries-pending"><th scope="row">Deliveries pending</th><td>0</td></tr>'
    )
    assert has_html(
        page, '<tr id="summary-deliveries-succeeded"><th scope="row">Deliveries succeeded</th><td>4</td></tr>'
    )
    assert has_html(page, '<tr id="backlog-count"><th scope="row">Pending deliveries</th><td>1</td></tr>')
    assert has_html(
        page,
        '<tr id="backlog-oldest"><th scope="row">Oldest pending for</th>'
        "<td>1\xa0day, 6\xa0hours (since 2026-11-29 06:30:00 UTC)</td></tr>",
    )
    assert has_html(
        page,
        f'<tr id="dashboard-failing-{three.pk}">'
        f'<td><a href="/admin/destinations/destination/{three.pk}/change/">'
        f"{three.url}</a></td><td>{three.account.account_name}</td><td>3</td><td>3</td><td>100.0 %</td>"
        "<td>20 ms</td><td>30 ms</td></tr>",
    )
    assert has_html(
        page,
        f'<tr id="dashboard-slowest-{hundred.pk}">'
        f'<td><a href="/admin/destinations/destination/{hundred.pk}/change/">'
        f"{hundred.url}</a></td><td>{hundred.account.account_name}</td><td>100</td><td>20</td><td>20.0 %</td>"
        "<td>50 ms</td><td>95 ms</td></tr>",
    )
    # The chart: 3 deliveries at 13:00 (the busiest hour: full height), 1 at 12:00, as SVG in the page.
    assert has_html(page, '<rect class="succeeded" x="0" y="0.0" width="22.5" height="160.0"></rect>')
    assert has_html(page, '<rect class="succeeded" x="0" y="106.7" width="22.5" height="53.3"></rect>')
    assert has_html(page, "<title>13:00: 3 succeeded, 0 failed, 0 pending, 0 paused</title>")
    # Nothing is fetched from elsewhere: every script, style and image is the app's own.
    assert re.findall(rb'(?:src|href)="(?:https?:)?//', page) == []


def test_the_admin_index_links_the_dashboard_and_the_site(admin_client):
    """The admin's index links the dashboard, and its "View site" leads to the landing page."""
    page = admin_client.get("/admin/").content
    assert has_html(page, '<a id="dashboard-link" href="/admin/dashboard/">Dashboard</a>')
    assert has_html(page, '<a href="/">View site</a>')


def test_the_dashboard_answers_503_when_the_database_fails(admin_client, monkeypatch):
    """A database that fails while the figures are read gets 503 with Retry-After, not 500."""

    def unavailable(*, now):
        raise OperationalError("connection refused")

    monkeypatch.setattr("server.pages.dashboard_get", unavailable)
    response = admin_client.get("/admin/dashboard/")
    assert (response.status_code, response.content) == (503, b"Service Unavailable")
    assert response["Retry-After"] == str(DATABASE_RETRY_AFTER_SECONDS)


def test_the_page_sections_have_stable_ids(admin_client):
    """Each section of the page has its element id, for browsers and scripts to find, even when empty."""
    page = admin_client.get("/admin/dashboard/").content.decode()
    ids = re.findall(r'<div class="module" id="([^"]+)">', page)
    assert ids == [
        "dashboard-summary",
        "dashboard-backlog",
        "dashboard-chart",
        "dashboard-slowest",
        "dashboard-failing",
        "dashboard-destinations",
    ]
