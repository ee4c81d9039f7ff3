"""The read side: what an ingest sends to, and the delivery log as the log API shows it."""

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from django.contrib.auth.models import AbstractBaseUser
from django.db import DEFAULT_DB_ALIAS, connection
from django.db.models import QuerySet
from django.utils import timezone

from accounts.selectors import scoped
from accounts.tokens import app_secret_token_hash
from datapusher.sql import db_value
from destinations.models import Destination
from server.models import Delivery, Event

# One indexed statement as SQL: compiling it with the ORM cost more than running it (datapusher/sql.py).
# Its destination columns come in the model's field order, which from_db below relies on.
_TARGET_SQL = """
    SELECT a.account_id, a.rate_limit, d.id, d.url, d.http_method, d.headers, d.signing_secret,
        d.previous_signing_secret, d.previous_secret_expires_at, d.consecutive_failures
    FROM accounts_account a LEFT JOIN destinations_destination d ON d.account_id = a.account_id
    WHERE a.{column} = %s ORDER BY d.id
"""
_BY_TOKEN = _TARGET_SQL.format(column="app_secret_token_hash")
_BY_ACCOUNT = _TARGET_SQL.format(column="account_id")


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
)


@dataclass(frozen=True)
class IngestTarget:
    """An account, by id, its own ingest rate limit (or None) and its destinations as they are now."""

    account_id: uuid.UUID
    rate_limit: str | None
    destinations: list[Destination]


def _ingest_target(sql: str, param: object) -> IngestTarget | None:
    with connection.cursor() as cursor:
        cursor.execute(sql, [param])
        rows = cursor.fetchall()
    if not rows:
        return None
    account_field = Destination._meta.get_field("account")
    headers_field = Destination._meta.get_field("headers")
    expires_field = Destination._meta.get_field("previous_secret_expires_at")
    account_id = account_field.to_python(rows[0][0])
    # As the ORM loads a row (from_db), the fields not selected deferred.
    destinations = [
        Destination.from_db(
            DEFAULT_DB_ALIAS,
            _DESTINATION_FIELDS,
            (
                destination_id,
                account_id,
                url,
                method,
                headers_field.from_db_value(headers, None, connection),
                secret,
                previous_secret,
                _aware(expires_field.to_python(expires)),
                failures,
            ),
        )
        for _, _, destination_id, url, method, headers, secret, previous_secret, expires, failures in rows
        if destination_id is not None
    ]
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
