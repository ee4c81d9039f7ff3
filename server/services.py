"""Ingest and delivery: an event in, one delivery per destination out, every attempt logged.

Worker threads only send HTTP (server.http); every database read and write happens on the
calling thread, so no thread holds a connection of its own.
"""

import json
import logging
import random
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError

from accounts.models import Account
from datapusher.celery import app as celery_app
from destinations.signing import sign
from server import http
from server.models import Attempt, Delivery, Event
from server.payload import payload_parse

# Methods whose request carries the data as query parameters instead of a body.
QUERY_METHODS = frozenset({"GET", "DELETE"})
RESPONSE_EXCERPT_BYTES = 4096
# Slack on top of the per-request deadline for thread hand-over before an attempt is given up.
FAN_OUT_GRACE_SECONDS = 1.0
DELIVER_TASK = "server.tasks.deliver"
# A task may start this early (clock skew, countdown rounding) and still count as due.
DUE_TOLERANCE = timedelta(seconds=2)
# A worker's lease on a delivery lasts the request deadline plus this, for the database writes.
LEASE_GRACE = timedelta(seconds=10)

logger = logging.getLogger(__name__)


class DestinationDeleted(Exception):
    """The delivery's destination no longer exists, so it cannot be sent again."""


@dataclass(frozen=True)
class IngestOutcome:
    event: Event
    deliveries: list[Delivery]
    duplicate: bool
    queued: bool = False


def retries_enabled() -> bool:
    """Retryable failures are retried in the background only when there is a broker to do it."""
    return bool(settings.CELERY_BROKER_URL)


def retry_delay(*, attempt_count: int, retry_after: float | None = None) -> float | None:
    """Seconds to wait after the `attempt_count`-th failed attempt, or None when none is left.

    From DATAPUSHER_RETRY_SCHEDULE with +/- DATAPUSHER_RETRY_JITTER; a destination's Retry-After
    is honoured instead, clamped to between 1 second and the schedule's longest wait.
    """
    schedule = settings.DATAPUSHER_RETRY_SCHEDULE
    if attempt_count > len(schedule):
        return None
    if retry_after is not None:
        return min(max(retry_after, 1.0), max(schedule))
    jitter = settings.DATAPUSHER_RETRY_JITTER
    return schedule[attempt_count - 1] * random.uniform(1 - jitter, 1 + jitter)  # noqa: S311 (not crypto)


def query_params(data: dict[str, Any]) -> list[tuple[str, str]]:
    """Top-level keys as query parameters: strings as is, any other value as compact JSON text."""
    return [
        (
            key,
            value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), ensure_ascii=False),
        )
        for key, value in data.items()
    ]


def _outbound_request(*, delivery: Delivery, body: bytes, data: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of http.send for one attempt of `delivery`, signed."""
    destination = delivery.destination
    headers = dict(destination.headers)
    if destination.http_method in QUERY_METHODS:
        params, payload = query_params(data), None
    else:
        params, payload = [], body
        if not any(name.lower() == "content-type" for name in headers):
            headers["Content-Type"] = "application/json"
    message_id, timestamp = str(delivery.delivery_id), int(time.time())
    headers["webhook-id"] = message_id
    headers["webhook-timestamp"] = str(timestamp)
    headers["webhook-signature"] = sign(
        secret=destination.signing_secret, message_id=message_id, timestamp=timestamp, body=payload or b""
    )
    return {
        "method": destination.http_method,
        "url": destination.url,
        "headers": headers,
        "params": params,
        "body": payload,
    }


_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def _executor_get() -> ThreadPoolExecutor:
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(
                max_workers=settings.DATAPUSHER_DELIVERY_CONCURRENCY, thread_name_prefix="delivery"
            )
        return _executor


SendResult = tuple[http.OutboundResponse | http.OutboundError, float, float]


def _fan_out(requests: Sequence[dict[str, Any]]) -> list[SendResult]:
    """Send all requests concurrently; each result arrives within the deadline (plus grace)."""
    if len(requests) == 1:
        return [http.timed_send(**requests[0])]
    executor = _executor_get()
    submitted, clock = time.time(), time.monotonic()
    futures = [executor.submit(http.timed_send, **request) for request in requests]
    give_up_at = clock + http.deadline_seconds() + FAN_OUT_GRACE_SECONDS
    results: list[SendResult] = []
    for future in futures:
        try:
            results.append(future.result(timeout=max(give_up_at - time.monotonic(), 0)))
        except FuturesTimeout:
            if future.cancel():
                error = http.OutboundError("not attempted: every delivery worker was busy")
            else:  # stuck where the watchdog cannot reach, such as a DNS lookup
                error = http.OutboundTimeout(f"no complete response within {http.deadline_seconds():g}s")
            results.append((error, submitted, time.monotonic() - clock))
    return results


def _clean_text(text: str) -> str:
    return text.replace("\x00", "\ufffd")  # PostgreSQL text cannot hold NUL


def _attempt_apply(*, delivery: Delivery, result: SendResult, retries: bool) -> Attempt:
    """Update `delivery` with one attempt's outcome and return the (unsaved) Attempt.

    A retryable failure with `retries` and tries left leaves the delivery pending, due later.
    """
    outcome, started, duration = result
    retry_after = None
    if isinstance(outcome, http.OutboundResponse):
        status_code = outcome.status_code
        excerpt = outcome.body[:RESPONSE_EXCERPT_BYTES].decode("utf-8", errors="replace")
        error = "" if outcome.succeeded else f"destination answered HTTP {status_code}"
        succeeded = outcome.succeeded
        retry_after = outcome.retry_after
    else:
        status_code, excerpt, error, succeeded = None, "", str(outcome), False
    duration_ms = round(duration * 1000)
    finished_at = datetime.fromtimestamp(started + duration, tz=UTC)
    delivery.attempt_count += 1
    delay = None
    if not succeeded and retries and outcome.retryable:
        delay = retry_delay(attempt_count=delivery.attempt_count, retry_after=retry_after)
    if succeeded:
        delivery.status = Delivery.Status.SUCCEEDED
    else:
        delivery.status = Delivery.Status.FAILED if delay is None else Delivery.Status.PENDING
    delivery.next_attempt_at = None if delay is None else finished_at + timedelta(seconds=delay)
    delivery.locked_until = None
    if not succeeded:
        logger.warning(
            "delivery %s to destination %s failed (attempt %s, %s): %s",
            delivery.delivery_id,
            delivery.destination_id,
            delivery.attempt_count,
            "retrying" if delay is not None else "final",
            error,
        )
    delivery.last_status_code = status_code
    delivery.duration_ms = duration_ms
    delivery.error = _clean_text(error)
    delivery.processed_at = finished_at
    delivery.url = delivery.destination.url
    delivery.http_method = delivery.destination.http_method
    return Attempt(
        delivery=delivery,
        status_code=status_code,
        response_body=_clean_text(excerpt),
        error=delivery.error,
        duration_ms=duration_ms,
        started_at=datetime.fromtimestamp(started, tz=UTC),
        finished_at=finished_at,
    )


DELIVERY_ATTEMPT_FIELDS = [
    "status",
    "attempt_count",
    "last_status_code",
    "duration_ms",
    "error",
    "processed_at",
    "url",
    "http_method",
    "next_attempt_at",
    "locked_until",
    "updated_at",
]


def deliveries_send(*, deliveries: Sequence[Delivery], body: bytes, data: dict[str, Any]) -> None:
    """Attempt each delivery once, concurrently; log the attempts and update the deliveries.

    Every delivery must have its destination. Failures are recorded, never raised. With a broker,
    retryable failures are left pending and scheduled (see deliveries_enqueue).
    """
    if not deliveries:
        return
    retries = retries_enabled()
    results = _fan_out([_outbound_request(delivery=d, body=body, data=data) for d in deliveries])
    attempts = [
        _attempt_apply(delivery=d, result=r, retries=retries)
        for d, r in zip(deliveries, results, strict=True)
    ]
    with transaction.atomic():
        Attempt.objects.bulk_create(attempts)
        # One UPDATE per row: bulk_update's CASE expressions cost far more CPU at these sizes.
        for delivery in deliveries:
            delivery.save(update_fields=DELIVERY_ATTEMPT_FIELDS)


def deliveries_enqueue(*, deliveries: Sequence[Delivery]) -> None:
    """Hand each pending delivery to a worker, due at its next_attempt_at. Never raises: what the
    broker does not take now, the sweeper enqueues later (the database is the source of truth)."""
    if not retries_enabled():
        return
    now = timezone.now()
    pending = [d for d in deliveries if d.status == Delivery.Status.PENDING]
    for sent, delivery in enumerate(pending):
        due = delivery.next_attempt_at or now
        try:
            celery_app.send_task(
                DELIVER_TASK, args=[delivery.pk], countdown=max((due - now).total_seconds(), 0)
            )
        except (BrokerError, OSError):
            # The broker is down: trying the rest would only make the caller wait.
            logger.exception("could not enqueue %s deliveries; the sweeper will", len(pending) - sent)
            return


def event_ingest(
    *, account: Account, body: bytes, data: dict[str, Any], external_id: str | None
) -> IngestOutcome:
    """Store the event and one pending delivery per destination, then deliver them.

    In sync mode the first attempts run now, concurrently (retries, with a broker, go to the
    queue); in queue mode every delivery is enqueued once the transaction commits.
    With an `external_id` already used by this account, nothing is stored or sent: the first
    event's outcome is returned with `duplicate=True` (a unique constraint decides, so two
    concurrent requests cannot both deliver).
    """
    queued = settings.DATAPUSHER_DELIVERY_MODE == "queue"
    destinations = list(account.destinations.all())
    now = timezone.now()
    try:
        with transaction.atomic():
            event = Event.objects.create(account=account, external_id=external_id, body=body.decode())
            deliveries = Delivery.objects.bulk_create(
                Delivery(
                    event=event, destination=d, url=d.url, http_method=d.http_method, next_attempt_at=now
                )
                for d in destinations
            )
            if queued:
                transaction.on_commit(lambda: deliveries_enqueue(deliveries=deliveries))
    except IntegrityError:
        if external_id is None:
            raise
        first = Event.objects.get(account=account, external_id=external_id)
        return IngestOutcome(event=first, deliveries=list(first.deliveries.all()), duplicate=True)
    if not queued:
        deliveries_send(deliveries=deliveries, body=body, data=data)
        deliveries_enqueue(deliveries=deliveries)
    event.processed_at = timezone.now()
    event.save(update_fields=["processed_at"])
    return IngestOutcome(event=event, deliveries=deliveries, duplicate=False, queued=queued)


def _event_payload(event: Event) -> tuple[bytes, dict[str, Any]]:
    body = event.body.encode()
    return body, payload_parse(body=body, content_type="application/json", charset=None)


def deliveries_redeliver(*, deliveries: QuerySet[Delivery]) -> list[Delivery]:
    """Send the given deliveries again now, with their webhook-ids, to their destinations as
    configured today. Deliveries whose destination was deleted are skipped. Returns those sent."""
    to_send = list(deliveries.select_related("event", "destination").filter(destination__isnull=False))
    by_event: dict[Any, list[Delivery]] = defaultdict(list)
    for delivery in to_send:
        by_event[delivery.event_id].append(delivery)
    for group in by_event.values():
        body, data = _event_payload(group[0].event)
        deliveries_send(deliveries=group, body=body, data=data)
        deliveries_enqueue(deliveries=group)
    return to_send


def event_redeliver(*, event: Event, include_succeeded: bool = False) -> list[Delivery]:
    """Send the event's failed deliveries again (all of them with `include_succeeded`)."""
    deliveries = event.deliveries.all()
    if not include_succeeded:
        deliveries = deliveries.filter(status=Delivery.Status.FAILED)
    return deliveries_redeliver(deliveries=deliveries)


def delivery_retry(*, delivery: Delivery) -> Delivery:
    """Send one delivery again now. Raises DestinationDeleted when its destination is gone."""
    if delivery.destination_id is None:
        raise DestinationDeleted
    [sent] = deliveries_redeliver(deliveries=Delivery.objects.filter(pk=delivery.pk))
    return sent


def delivery_attempt_due(*, delivery_pk: int) -> float | None:
    """The worker's step: attempt the delivery if it is pending, due and not leased by another worker.

    Returns the seconds until its next attempt when it stays pending (a retryable failure), else
    None: sent, failed for good, not due yet, or someone else's. Idempotent: a delivery that
    succeeded is never sent again.
    """
    now = timezone.now()
    claimed = (
        Delivery.objects.filter(pk=delivery_pk, status=Delivery.Status.PENDING)
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now + DUE_TOLERANCE))
        .filter(Q(locked_until__isnull=True) | Q(locked_until__lt=now))
        .update(locked_until=now + timedelta(seconds=http.deadline_seconds()) + LEASE_GRACE)
    )
    if not claimed:
        return None
    delivery = Delivery.objects.select_related("event", "destination").get(pk=delivery_pk)
    if delivery.destination is None:
        delivery.status, delivery.error, delivery.locked_until = (
            Delivery.Status.FAILED,
            "destination deleted",
            None,
        )
        delivery.save(update_fields=["status", "error", "locked_until", "updated_at"])
        return None
    body, data = _event_payload(delivery.event)
    deliveries_send(deliveries=[delivery], body=body, data=data)
    if delivery.status != Delivery.Status.PENDING:
        return None
    return max((delivery.next_attempt_at - timezone.now()).total_seconds(), 0)


def deliveries_sweep(*, overdue_seconds: float, limit: int = 1000) -> int:
    """Enqueue pending deliveries overdue by more than `overdue_seconds` and not leased, such as
    those a flushed broker or a killed worker lost. Returns how many were enqueued."""
    now = timezone.now()
    overdue = list(
        Delivery.objects.filter(
            status=Delivery.Status.PENDING, next_attempt_at__lt=now - timedelta(seconds=overdue_seconds)
        ).filter(Q(locked_until__isnull=True) | Q(locked_until__lt=now))[:limit]
    )
    deliveries_enqueue(deliveries=overdue)
    return len(overdue)


def events_purge(*, older_than: datetime, batch_size: int = 1000) -> int:
    """Delete events received before `older_than` (their deliveries and attempts cascade in the
    database), in batches so no statement locks the tables for long. Returns the number deleted."""
    deleted = 0
    while True:
        batch = list(
            Event.objects.filter(received_at__lt=older_than).values_list("event_id", flat=True)[:batch_size]
        )
        if not batch:
            return deleted
        Event.objects.filter(event_id__in=batch).delete()
        deleted += len(batch)
