"""Ingest and delivery: an event in, one delivery per destination out, every attempt logged.

Worker threads only send HTTP (server.http); every database read and write happens on the
calling thread, so no thread holds a connection of its own.
"""

import json
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from accounts.models import Account
from destinations.signing import sign
from server import http
from server.models import Attempt, Delivery, Event
from server.payload import payload_parse

# Methods whose request carries the data as query parameters instead of a body.
QUERY_METHODS = frozenset({"GET", "DELETE"})
RESPONSE_EXCERPT_BYTES = 4096
# Slack on top of the per-request deadline for thread hand-over before an attempt is given up.
FAN_OUT_GRACE_SECONDS = 1.0


class DestinationDeleted(Exception):
    """The delivery's destination no longer exists, so it cannot be sent again."""


@dataclass(frozen=True)
class IngestOutcome:
    event: Event
    deliveries: list[Delivery]
    duplicate: bool


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


def _attempt_apply(*, delivery: Delivery, result: SendResult) -> Attempt:
    """Update `delivery` with one attempt's outcome and return the (unsaved) Attempt."""
    outcome, started, duration = result
    if isinstance(outcome, http.OutboundResponse):
        status_code = outcome.status_code
        excerpt = outcome.body[:RESPONSE_EXCERPT_BYTES].decode("utf-8", errors="replace")
        error = "" if outcome.succeeded else f"destination answered HTTP {status_code}"
        succeeded = outcome.succeeded
    else:
        status_code, excerpt, error, succeeded = None, "", str(outcome), False
    duration_ms = round(duration * 1000)
    finished_at = datetime.fromtimestamp(started + duration, tz=UTC)
    delivery.status = Delivery.Status.SUCCEEDED if succeeded else Delivery.Status.FAILED
    delivery.attempt_count += 1
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
    "updated_at",
]


def deliveries_send(*, deliveries: Sequence[Delivery], body: bytes, data: dict[str, Any]) -> None:
    """Attempt each delivery once, concurrently; log the attempts and update the deliveries.

    Every delivery must have its destination. Failures are recorded, never raised.
    """
    if not deliveries:
        return
    results = _fan_out([_outbound_request(delivery=d, body=body, data=data) for d in deliveries])
    attempts = [_attempt_apply(delivery=d, result=r) for d, r in zip(deliveries, results, strict=True)]
    with transaction.atomic():
        Attempt.objects.bulk_create(attempts)
        # One UPDATE per row: bulk_update's CASE expressions cost far more CPU at these sizes.
        for delivery in deliveries:
            delivery.save(update_fields=DELIVERY_ATTEMPT_FIELDS)


def event_ingest(
    *, account: Account, body: bytes, data: dict[str, Any], external_id: str | None
) -> IngestOutcome:
    """Store the event and one delivery per destination, then deliver them all concurrently.

    With an `external_id` already used by this account, nothing is stored or sent: the first
    event's outcome is returned with `duplicate=True` (a unique constraint decides, so two
    concurrent requests cannot both deliver).
    """
    destinations = list(account.destinations.all())
    try:
        with transaction.atomic():
            event = Event.objects.create(account=account, external_id=external_id, body=body.decode())
            deliveries = Delivery.objects.bulk_create(
                Delivery(event=event, destination=d, url=d.url, http_method=d.http_method)
                for d in destinations
            )
    except IntegrityError:
        if external_id is None:
            raise
        first = Event.objects.get(account=account, external_id=external_id)
        return IngestOutcome(event=first, deliveries=list(first.deliveries.all()), duplicate=True)
    deliveries_send(deliveries=deliveries, body=body, data=data)
    event.processed_at = timezone.now()
    event.save(update_fields=["processed_at"])
    return IngestOutcome(event=event, deliveries=deliveries, duplicate=False)


def deliveries_redeliver(*, deliveries: QuerySet[Delivery]) -> list[Delivery]:
    """Send the given deliveries again now, with their webhook-ids, to their destinations as
    configured today. Deliveries whose destination was deleted are skipped. Returns those sent."""
    to_send = list(deliveries.select_related("event", "destination").filter(destination__isnull=False))
    by_event: dict[Any, list[Delivery]] = defaultdict(list)
    for delivery in to_send:
        by_event[delivery.event_id].append(delivery)
    for group in by_event.values():
        body = group[0].event.body.encode()
        data = payload_parse(body=body, content_type="application/json", charset=None)
        deliveries_send(deliveries=group, body=body, data=data)
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
