"""The read side: what an ingest sends to, the delivery log as the log API shows it, and the
operator dashboard's figures."""

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.db import DEFAULT_DB_ALIAS, connection
from django.db.models import Case, Count, DateTimeField, F, Field, Max, Min, Q, QuerySet, Sum, When, Window
from django.db.models.functions import RowNumber, TruncHour
from django.db.models.lookups import GreaterThanOrEqual, LessThan
from django.utils import timezone

from accounts.models import Account
from accounts.selectors import scoped
from accounts.tokens import app_secret_token_hash
from datapusher.sql import db_value
from destinations.addresses import url_without_credentials
from destinations.models import CircuitState, Destination
from server.models import Attempt, Delivery, DispatcherHeartbeat, Event, Recovery

# The destination columns an ingest reads, in the model's field order (as from_db below takes them).
_DESTINATION_FIELDS = (
    "id",
    "account_id",
    "url",
    "http_method",
    "headers",
    "signing_secret",
    "previous_signing_secret",
    "previous_secret_expires_at",
    "consecutive_failures",
    "enabled",
    "disabled_reason",
    "auth",
    "auth_secret",
    "circuit_state",
    "circuit_opened_at",
    "circuit_trips",
    "next_probe_at",
)
# One indexed statement as SQL: compiling it with the ORM cost more than running it (datapusher/sql.py).
_TARGET_SQL = f"""
    SELECT a.account_id, a.rate_limit, {", ".join(f"d.{name}" for name in _DESTINATION_FIELDS)}
    FROM accounts_account a LEFT JOIN destinations_destination d ON d.account_id = a.account_id
    WHERE a.{{column}} = %s ORDER BY d.id
"""  # noqa: S608 (the model's column names, no input)
_BY_TOKEN = _TARGET_SQL.format(column="app_secret_token_hash")
_BY_ACCOUNT = _TARGET_SQL.format(column="account_id")


@dataclass(frozen=True)
class IngestTarget:
    """An account, by id, its own ingest rate limit (or None) and its destinations as they are now."""

    account_id: uuid.UUID
    rate_limit: str | None
    destinations: list[Destination]


def _column_value(field: Field, value: object) -> object:
    """A column read by hand as the ORM would load it."""
    if value is None:
        return None
    if hasattr(field, "from_db_value"):
        return field.from_db_value(value, None, connection)
    if isinstance(field, DateTimeField):
        return _aware(field.to_python(value))
    return field.to_python(value)


def _ingest_target(sql: str, param: object) -> IngestTarget | None:
    with connection.cursor() as cursor:
        cursor.execute(sql, [param])
        rows = cursor.fetchall()
    if not rows:
        return None
    fields = [Destination._meta.get_field(name) for name in _DESTINATION_FIELDS]
    # As the ORM loads a row (from_db), the fields not selected deferred.
    destinations = [
        Destination.from_db(
            DEFAULT_DB_ALIAS,
            [field.attname for field in fields],
            [_column_value(field, value) for field, value in zip(fields, row[2:], strict=True)],
        )
        for row in rows
        if row[2] is not None
    ]
    account_id = Destination._meta.get_field("account").to_python(rows[0][0])
    return IngestTarget(account_id=account_id, rate_limit=rows[0][1], destinations=destinations)


def _aware(value: datetime | None) -> datetime | None:
    """A date-time read by hand: SQLite's come naive, in UTC."""
    return value if value is None or timezone.is_aware(value) else timezone.make_aware(value, UTC)


def ingest_target_by_token(*, token: str) -> IngestTarget | None:
    """The account whose app secret token is `token` with its destinations (one statement, by the
    token's hash), or None (also for an empty token)."""
    return _ingest_target(_BY_TOKEN, app_secret_token_hash(token)) if token else None


def ingest_target_get(*, account_id: uuid.UUID) -> IngestTarget | None:
    """The account and its destinations as they are now, or None if it was deleted."""
    return _ingest_target(_BY_ACCOUNT, db_value(model=Destination, field="account", value=account_id))


def event_list(*, user: AbstractBaseUser) -> QuerySet[Event]:
    """The events of the accounts `user` is a member of (all for staff), newest first."""
    return scoped(Event.objects.all(), user=user)


def event_detail_list(*, user: AbstractBaseUser) -> QuerySet[Event]:
    """event_list with each event's deliveries and their attempts, for detail views."""
    return event_list(user=user).prefetch_related("deliveries__attempts", "deliveries__event")


def delivery_list(*, user: AbstractBaseUser) -> QuerySet[Delivery]:
    """The deliveries of the accounts `user` is a member of (all for staff), newest first, with
    what their list entries show."""
    return scoped(
        Delivery.objects.select_related("event", "destination").order_by("-id"),
        user=user,
        account_path="event__account_id",
    )


def delivery_detail_list(*, user: AbstractBaseUser) -> QuerySet[Delivery]:
    """delivery_list with each delivery's attempts, for detail views."""
    return delivery_list(user=user).prefetch_related("attempts")


def recovery_deliveries(
    *,
    account: Account,
    destination: Destination | None,
    since: datetime,
    until: datetime,
    statuses: list[str],
) -> QuerySet[Delivery]:
    """The deliveries a recovery of this range takes: the account's (or only the destination's)
    whose event was received at or after `since` and before `until`, in one of `statuses`; oldest
    first."""
    deliveries = Delivery.objects.filter(
        event__account=account,
        event__received_at__gte=since,
        event__received_at__lt=until,
        status__in=statuses,
    )
    if destination is not None:
        deliveries = deliveries.filter(destination=destination)
    return deliveries.order_by("pk")


def recovery_list(*, user: AbstractBaseUser) -> QuerySet[Recovery]:
    """The recoveries of the accounts `user` is a member of (all for staff), newest first."""
    return scoped(Recovery.objects.all(), user=user)


@dataclass(frozen=True)
class RecoveryProgress:
    """Where a recovery is: `running` while any delivery it took is pending (queue mode), `done`
    once none is (or, in sync mode, once its request ended). Of the deliveries it took: `sent`, those
    attempted since it started, of which `succeeded` and `failed` ended so; `pending` and `paused`,
    those waiting (the paused ones for their destination's resume)."""

    recovery: Recovery
    status: str
    sent: int
    succeeded: int
    failed: int
    pending: int
    paused: int
    finished_at: datetime | None

    @property
    def taken(self) -> int:
        """The matching deliveries it took (the others were skipped)."""
        return self.recovery.count - sum(self.recovery.skipped.values())


def recovery_progress_get(*, recovery: Recovery) -> RecoveryProgress:
    """`recovery`'s progress, from its deliveries in one aggregate statement (on the partial index
    of the deliveries that belong to a recovery)."""
    sent = Q(processed_at__gte=recovery.created_at)
    counts = recovery.deliveries.aggregate(
        sent=Count("pk", filter=sent),
        succeeded=Count("pk", filter=sent & Q(status=Delivery.Status.SUCCEEDED)),
        failed=Count("pk", filter=sent & Q(status=Delivery.Status.FAILED)),
        pending=Count("pk", filter=Q(status=Delivery.Status.PENDING)),
        paused=Count("pk", filter=Q(status=Delivery.Status.PAUSED)),
        last_sent_at=Max("processed_at", filter=sent),
    )
    last_sent_at = counts.pop("last_sent_at")
    done = recovery.finished_at is not None or counts["pending"] == 0
    finished_at = recovery.finished_at or ((last_sent_at or recovery.created_at) if done else None)
    return RecoveryProgress(
        recovery=recovery, status="done" if done else "running", finished_at=finished_at, **counts
    )


def deliveries_pending_backlog() -> tuple[int, datetime | None]:
    """How many deliveries are pending, and when the oldest of them was created (None: none is).
    One statement, answered from an index on pending deliveries (it reads only those)."""
    backlog = Delivery.objects.filter(status=Delivery.Status.PENDING).aggregate(
        count=Count("*"), oldest=Min("created_at")
    )
    return backlog["count"], backlog["oldest"]


def dispatcher_last_beat() -> datetime | None:
    """When the most recent dispatcher heartbeat was written, or None if no dispatcher is beating."""
    return DispatcherHeartbeat.objects.aggregate(last=Max("beat_at"))["last"]


# The operator dashboard (server/pages.py): a day of the log in a constant number of queries.

DASHBOARD_HOURS = 24
DASHBOARD_TOP = 5
# The page lists this many destinations, the busiest, whatever the number that had attempts.
DASHBOARD_BUSIEST = 50


@dataclass(frozen=True)
class HourCounts:
    """Deliveries created in one clock hour, by status."""

    start: datetime
    pending: int
    succeeded: int
    failed: int
    paused: int

    @property
    def total(self) -> int:
        return self.pending + self.succeeded + self.failed + self.paused


@dataclass(frozen=True)
class DestinationStats:
    """One destination's attempts in a window: how many, how many failed (no 2xx answer), their
    durations' 50th and 95th percentiles (nearest rank: an actual duration, the one at rank
    ceil(p n / 100) of the n sorted; None without attempts) and when the last success and the last
    failure started (None: none in the window)."""

    destination_id: int
    url: str
    account_name: str
    attempts: int
    failed: int
    p50_ms: int | None
    p95_ms: int | None
    last_success_at: datetime | None
    last_failure_at: datetime | None

    @property
    def succeeded(self) -> int:
        return self.attempts - self.failed

    @property
    def failure_percent(self) -> float:
        return 100 * self.failed / self.attempts

    @property
    def success_rate(self) -> float | None:
        return self.succeeded / self.attempts if self.attempts else None


@dataclass(frozen=True)
class Dashboard:
    """The log from `since` (the start of the clock hour, in UTC, 23 hours before `now`'s) to `now`."""

    now: datetime
    since: datetime
    events_received: int
    events_processed: int
    hours: list[HourCounts]
    destinations: list[DestinationStats]
    backlog: int
    oldest_pending_created_at: datetime | None

    @property
    def deliveries(self) -> dict[str, int]:
        return {
            status: sum(getattr(hour, status) for hour in self.hours) for status in Delivery.Status.values
        }

    @property
    def oldest_pending_age(self) -> timedelta | None:
        created_at = self.oldest_pending_created_at
        return None if created_at is None else self.now - created_at

    @property
    def slowest(self) -> list[DestinationStats]:
        return sorted(self.destinations, key=lambda d: (-d.p95_ms, -d.p50_ms, d.destination_id))[
            :DASHBOARD_TOP
        ]

    @property
    def most_failing(self) -> list[DestinationStats]:
        failing = [d for d in self.destinations if d.failed]
        return sorted(failing, key=lambda d: (-d.failure_percent, -d.failed, d.destination_id))[
            :DASHBOARD_TOP
        ]

    @property
    def not_listed(self) -> int:
        return max(len(self.destinations) - DASHBOARD_BUSIEST, 0)

    @property
    def busiest(self) -> list[DestinationStats]:
        return sorted(self.destinations, key=lambda d: (-d.attempts, d.destination_id))[:DASHBOARD_BUSIEST]


# An attempt succeeded when the destination answered 2xx (server/http.py: OutboundResponse.succeeded);
# no answer at all (timeout, refused connection or address) is a failure.
_SUCCEEDED = Q(status_code__gte=200, status_code__lt=300)


def _at_nearest_rank(percent: int) -> Q:
    """Rows whose rank (1..total within their destination, by duration) is the nearest rank of
    `percent`: the smallest rank with 100 rank >= percent total, in integers on every database."""
    share = F("total") * percent
    return Q(GreaterThanOrEqual(F("rank") * 100, share)) & Q(LessThan(F("rank") * 100, share + 100))


def _destination_stats(
    *, since: datetime, now: datetime, destination_id: int | None = None
) -> list[DestinationStats]:
    """Per destination (or only `destination_id`'s), from one statement whatever their number.
    PostgreSQL's percentile_cont does not exist on SQLite, and reading a day of durations into
    Python is unbounded: the database numbers each destination's attempts by duration (window
    functions, on both) and returns only the rows at the 50th and 95th percentile ranks — at most
    two per destination, each carrying its destination's counts and last times. The sort is the
    database's, bounded by its own memory settings (spilling to disk), over the rows of the window
    only (index attempt_started; attempt_destination_started for one destination)."""
    by_destination = {"partition_by": [F("destination_id")]}
    attempts = Attempt.objects.filter(started_at__gte=since, started_at__lte=now)
    if destination_id is None:
        attempts = attempts.filter(destination__isnull=False)
    else:
        attempts = attempts.filter(destination_id=destination_id)
    rows = (
        attempts.annotate(
            rank=Window(RowNumber(), order_by=[F("duration_ms").asc(), F("id").asc()], **by_destination),
            total=Window(Count("id"), **by_destination),
            failed=Window(Sum(Case(When(_SUCCEEDED, then=0), default=1)), **by_destination),
            last_success_at=Window(Max(Case(When(_SUCCEEDED, then=F("started_at")))), **by_destination),
            last_failure_at=Window(Max(Case(When(~_SUCCEEDED, then=F("started_at")))), **by_destination),
        )
        .filter(_at_nearest_rank(50) | _at_nearest_rank(95))
        .order_by("destination_id", "rank")
        .values_list(
            "destination_id",
            "destination__url",
            "destination__account__account_name",
            "total",
            "failed",
            "duration_ms",
            "last_success_at",
            "last_failure_at",
        )
    )
    found: dict[int, DestinationStats] = {}
    for destination, url, account_name, total, failed, duration_ms, last_success_at, last_failure_at in rows:
        # By rank: a destination's first row is at the 50th percentile, its last at the 95th
        # (one row is both when its rank is the nearest for both, e.g. with a single attempt).
        earlier = found.get(destination)
        found[destination] = DestinationStats(
            destination_id=destination,
            url=url_without_credentials(url),
            account_name=account_name,
            attempts=total,
            failed=failed,
            p50_ms=duration_ms if earlier is None else earlier.p50_ms,
            p95_ms=duration_ms,
            last_success_at=last_success_at,
            last_failure_at=last_failure_at,
        )
    return list(found.values())


def destination_stats_get(*, destination: Destination, since: datetime, now: datetime) -> DestinationStats:
    """`destination`'s attempts started from `since` to `now` (both included), in one query
    whatever their number; without any, zeros and Nones (and no account_name: not read for that)."""
    found = _destination_stats(since=since, now=now, destination_id=destination.pk)
    if found:
        return found[0]
    return DestinationStats(
        destination_id=destination.pk,
        url=url_without_credentials(destination.url),
        account_name="",
        attempts=0,
        failed=0,
        p50_ms=None,
        p95_ms=None,
        last_success_at=None,
        last_failure_at=None,
    )


def dashboard_get(*, now: datetime) -> Dashboard:
    """The operator dashboard's figures at `now`, in four queries whatever the number of
    destinations: events received and processed, deliveries per clock hour and status, each
    destination's attempts, failure rate and duration percentiles, and the pending backlog."""
    hour = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    since = hour - timedelta(hours=DASHBOARD_HOURS - 1)
    events = Event.objects.filter(received_at__gte=since, received_at__lte=now).aggregate(
        received=Count("pk"), processed=Count("pk", filter=Q(processed_at__isnull=False))
    )
    per_hour = (
        Delivery.objects.filter(created_at__gte=since, created_at__lte=now)
        .annotate(hour=TruncHour("created_at", tzinfo=UTC))
        .values_list("hour", "status")
        .annotate(count=Count("id"))
        .order_by()
    )
    counts: dict[tuple[datetime, str], int] = {(hour, status): count for hour, status, count in per_hour}
    starts = [since + timedelta(hours=n) for n in range(DASHBOARD_HOURS)]
    backlog, oldest_pending_created_at = deliveries_pending_backlog()
    return Dashboard(
        now=now,
        since=since,
        events_received=events["received"],
        events_processed=events["processed"],
        hours=[
            HourCounts(
                start=start,
                **{status: counts.get((start, status), 0) for status in Delivery.Status.values},
            )
            for start in starts
        ],
        destinations=_destination_stats(since=since, now=now),
        backlog=backlog,
        oldest_pending_created_at=oldest_pending_created_at,
    )


def circuits_by_state() -> dict[str, int]:
    """How many destinations' circuits are open and half-open now (one query, on a partial index)."""
    rows = (
        Destination.objects.exclude(circuit_state=CircuitState.CLOSED)
        .values_list("circuit_state")
        .annotate(count=Count("pk"))
    )
    return {**dict.fromkeys([CircuitState.OPEN, CircuitState.HALF_OPEN], 0), **dict(rows)}
