"""Sending deliveries: claim, send within this process's limits, record the outcome.

Every send — the ingest's first attempt, a worker's, a manual retry or redelivery — holds a lease on
the delivery (lease_id + lease_expires_at, taken with one conditional UPDATE) and writes its outcome
only WHERE lease_id is still its own. A sender whose lease ran out and was taken over has its
attempt recorded and counted, and moves nothing else — except a success, onto a delivery still
pending that nobody holds. HTTP runs on the delivery pool's threads (server.http);
every database read and write happens on the calling thread.
"""

import contextlib
import contextvars
import json
import logging
import random
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from datapusher.logs import request_id_bound
from datapusher.sql import db_value, rows_insert, rows_update
from destinations.models import Destination
from destinations.services import destination_disable
from destinations.signing import signature
from server import broker, http, metrics
from server.models import Attempt, Delivery, Event, unleased
from server.payload import payload_loads
from server.services import alerts, breaker, limits
from server.services.credentials import Authorizer, authorizer_for
from server.services.dispatch import deliveries_hand_over

# Methods whose request carries the data as query parameters instead of a body.
QUERY_METHODS = frozenset({"GET", "DELETE"})
RESPONSE_EXCERPT_BYTES = 4096
# Slack on top of a request's deadline before its caller stops waiting for it.
FAN_OUT_GRACE_SECONDS = 1.0
# A lease outlasts the longest send (deadline + grace) by this much, room for the database writes.
LEASE_GRACE = timedelta(seconds=10)
# A delivery that found no free slot is due again 1 to 5 s later (no attempt is spent on it),
# spread so that a flooding account's deliveries do not all come back at once.
NOT_STARTED_DELAY_SECONDS = (1.0, 5.0)
NOT_STARTED = "not started: the account or this process has too many deliveries in flight; still pending"
# A destination with OAuth 2.0 credentials answered 401: its delivery is sent once more, at once, with
# a new access token (by this sender; due this much later for anyone else, should this one stop).
REAUTHORIZED = "destination answered HTTP 401; sending once more with a new access token"
REAUTHORIZE_DELAY = timedelta(seconds=60)

logger = logging.getLogger(__name__)

# The event's body as received, and parsed if that was kept (None: parsed again when a GET/DELETE
# destination needs its keys; a large body's objects are not held for the POST ones).
Payload = tuple[bytes, dict[str, Any] | None]
SendResult = tuple[http.OutboundResponse | http.OutboundError, float, float]  # outcome, unix start, seconds


def _send_seconds(*, fetches_token: bool) -> float:
    """The longest a delivery's send may take: one request's deadline, two when it may first fetch
    an access token."""
    return http.deadline_seconds() * (2 if fetches_token else 1)


def send_deadline(request: Mapping[str, Any]) -> float:
    """_send_seconds for a request made by _outbound_request."""
    authorizer = request.get("authorizer")
    return _send_seconds(fetches_token=authorizer is not None and authorizer.fetches_token)


def longest_wait_seconds(*, fetches_token: bool) -> float:
    """The longest deliveries_send may take for a delivery: its send and the grace, and for one with
    OAuth credentials the same again (sent once more with a new token after a 401)."""
    once = _send_seconds(fetches_token=fetches_token) + FAN_OUT_GRACE_SECONDS
    return 2 * once if fetches_token else once


def lease_duration(*, fetches_token: bool = False) -> timedelta:
    """How long a lease lasts: the longest send + grace + time for the writes."""
    return timedelta(seconds=_send_seconds(fetches_token=fetches_token) + FAN_OUT_GRACE_SECONDS) + LEASE_GRACE


def _leases_extend_for_token_fetches(*, deliveries: Sequence[Delivery], lease_id: uuid.UUID) -> None:
    """Deliveries whose send may first fetch an access token keep their lease one deadline longer
    (one UPDATE, only when there are such deliveries)."""
    fetching = [d.pk for d in deliveries if d.destination.auth_fetches_token]
    if fetching:
        Delivery.objects.filter(pk__in=fetching, lease_id=lease_id).update(
            lease_expires_at=timezone.now() + lease_duration(fetches_token=True)
        )


def retry_after_delay(*, retry_after: float) -> float:
    """A destination's Retry-After (seconds), clamped to between 1 second and DATAPUSHER_RETRY_AFTER_MAX."""
    return min(max(retry_after, 1.0), settings.DATAPUSHER_RETRY_AFTER_MAX)


def retry_delay(*, attempt_count: int, retry_after: float | None = None) -> float | None:
    """Seconds to wait after the `attempt_count`-th failed attempt, or None when none is left.

    From DATAPUSHER_RETRY_SCHEDULE with +/- DATAPUSHER_RETRY_JITTER; a destination's Retry-After
    is honoured instead (retry_after_delay).
    """
    schedule = settings.DATAPUSHER_RETRY_SCHEDULE
    if attempt_count > len(schedule):
        return None
    if retry_after is not None:
        return retry_after_delay(retry_after=retry_after)
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


def event_payloads(*, events: Iterable[Event]) -> dict[Any, Payload]:
    """Each event's body, by event_id, as deliveries_send takes them."""
    return {event.event_id: (event.body.encode(), None) for event in events}


def send_blocked(*, destination: Destination, now: datetime) -> breaker.Held | None:
    """The one place that decides whether a destination may be sent to now: None if it may, else
    why not and how its deliveries are kept: `paused` while it is disabled, `pending` while its
    circuit is open (nothing is sent, no attempt is spent). A circuit whose probe is due lets the
    sender try to claim the probe (breaker.probes_claim)."""
    if not destination.enabled:
        return breaker.Held(
            reason=breaker.disabled_text(destination.disabled_reason), status=Delivery.Status.PAUSED
        )
    return breaker.circuit_held(destination=destination, now=now)


def payload_needs_data(*, destinations: Iterable[Any]) -> bool:
    """Whether any of the destinations is sent the event's keys (GET/DELETE), not its body."""
    return any(destination.http_method in QUERY_METHODS for destination in destinations)


def _outbound_request(*, delivery: Delivery, payload: Payload) -> dict[str, Any]:
    """The keyword arguments of http.send for one attempt of `delivery`, signed."""
    body, data = payload
    destination = delivery.destination
    headers = dict(destination.headers)
    if destination.http_method in QUERY_METHODS:
        params, content = query_params(payload_loads(text=body.decode()) if data is None else data), None
    else:
        params, content = [], body
        if not any(name.lower() == "content-type" for name in headers):
            headers["Content-Type"] = "application/json"
    message_id, timestamp = str(delivery.delivery_id), int(time.time())
    headers["webhook-id"] = message_id
    headers["webhook-timestamp"] = str(timestamp)
    secrets = destination.signing_secrets(now=timezone.now())
    return {
        # Adds Authorization on the sending thread (where an access token may be fetched).
        "authorizer": authorizer_for(destination=destination),
        "method": destination.http_method,
        "url": destination.url,
        "headers": headers,
        "params": params,
        "body": content,
        # Signs the body, or for GET/DELETE the query string exactly as sent, once http has built it.
        "sign": lambda signed: {
            "webhook-signature": signature(
                secrets=secrets, message_id=message_id, timestamp=timestamp, content=signed
            )
        },
    }


# --- Limits: the pool and the per-account bulkhead ------------------------------------------------


class _Bulkhead:
    """What one account may take of this process, so that its slow destinations starve nobody else.

    Two things are scarce: the threads that wait for a send (web threads for an ingest, worker
    threads for a task) and the delivery pool's DATAPUSHER_DELIVERY_CONCURRENCY request slots.
    With S = DATAPUSHER_ACCOUNT_CONCURRENCY, an account may have at most S threads holding it
    (waiting on its sends) at once, and may take a request slot while it has fewer than S in flight
    or while S slots stay free for the others after it. So one account alone may use all but S
    slots, an ingest to many destinations is not split while the pool has room, and while one
    account is over its share the others find S slots between them. (Two accounts flooding at once
    may hold 2 x S threads.)

    Nothing waits: a thread that cannot hold the account does not send, and a request that gets no
    slot is not started (its delivery stays pending).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests = 0
        self._by_account: dict[Any, list[int]] = {}  # account -> [threads holding it, requests in flight]
        self._held = threading.local()  # this thread: account -> how many nested holds

    @contextlib.contextmanager
    def hold(self, account_id: Any) -> Iterator[bool]:
        """Count this thread as one of the account's waiting sends while inside, if the account has
        fewer than its share: yields whether it had. Re-entrant: a thread counts once per account."""
        if not hasattr(self._held, "depth"):
            self._held.depth = {}
        depth: dict[Any, int] = self._held.depth
        if not depth.get(account_id):
            with self._lock:
                counts = self._by_account.setdefault(account_id, [0, 0])
                admitted = counts[0] < settings.DATAPUSHER_ACCOUNT_CONCURRENCY
                if admitted:
                    counts[0] += 1
            if not admitted:
                yield False
                return
        depth[account_id] = depth.get(account_id, 0) + 1
        try:
            yield True
        finally:
            depth[account_id] -= 1
            if not depth[account_id]:
                del depth[account_id]
                self._change(account_id, threads=-1, requests=0)

    def take(self, account_id: Any, wanted: int) -> int:
        """Take up to `wanted` request slots for an account this thread holds; returns how many. Each
        is given back with release()."""
        share, pool = settings.DATAPUSHER_ACCOUNT_CONCURRENCY, settings.DATAPUSHER_DELIVERY_CONCURRENCY
        with self._lock:
            counts = self._by_account[account_id]
            free = pool - self._requests
            granted = max(0, min(wanted, max(share - counts[1], free - share), free))
            counts[1] += granted
            self._requests += granted
            return granted

    def release(self, account_id: Any) -> None:
        """One request slot taken with take() is free again."""
        self._change(account_id, threads=0, requests=-1)

    def _change(self, account_id: Any, *, threads: int, requests: int) -> None:
        with self._lock:
            counts = self._by_account[account_id]
            counts[0] += threads
            counts[1] += requests
            self._requests += requests
            if counts == [0, 0]:
                del self._by_account[account_id]


bulkhead = _Bulkhead()
_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def _executor_get() -> ThreadPoolExecutor:
    global _executor
    with _executor_lock:
        if _executor is None:
            # As many threads as slots: a request that got a slot starts at once.
            _executor = ThreadPoolExecutor(
                max_workers=settings.DATAPUSHER_DELIVERY_CONCURRENCY, thread_name_prefix="delivery"
            )
        return _executor


def _authorized_send(*, authorizer: Authorizer | None = None, **request) -> SendResult:
    """http.timed_send with the destination's credentials, never raising; nothing is sent when
    they cannot be had. A 401 tells the authorizer its token was refused."""
    if authorizer is None:
        return http.timed_send(**request)
    started, clock = time.time(), time.monotonic()
    try:
        authorization = authorizer.headers()
    except http.OutboundError as err:
        return err, started, time.monotonic() - clock
    except Exception as err:  # as http.timed_send: one destination never breaks the others
        logger.exception("unexpected error authenticating to destination %s", authorizer.destination_pk)
        return (
            http.OutboundError(f"unexpected error: {type(err).__name__}"),
            started,
            time.monotonic() - clock,
        )
    result = http.timed_send(**{**request, "headers": {**request["headers"], **authorization}})
    if isinstance(result[0], http.OutboundResponse) and result[0].status_code == 401:
        authorizer.refused(authorization)
    return result


def _send_then_release(account_id: Any, request: dict[str, Any]) -> SendResult:
    try:
        return _authorized_send(**request)
    finally:
        bulkhead.release(account_id)


def _submit(
    executor: ThreadPoolExecutor, account_id: Any, requests: Sequence[tuple[int, dict[str, Any]]]
) -> list[tuple[int, Future]]:
    """Hand the account's granted requests to the pool; a slot not used is given back."""
    started = []
    for position, (index, request) in enumerate(requests):
        try:
            # In the caller's context: a line logged while sending carries its request id.
            run = contextvars.copy_context().run
            started.append((index, executor.submit(run, _send_then_release, account_id, request)))
        except BaseException:  # the pool is shutting down
            for _ in requests[position:]:
                bulkhead.release(account_id)
            raise
    return started


def _fan_out(requests: Sequence[tuple[Any, dict[str, Any]]]) -> list[SendResult | None]:
    """Start every (account_id, request) the bulkhead allows, all at once, and wait for each until
    its deadline (plus grace) has passed. None for a request that was not started.

    Each request's deadline runs from its own start, which is now: a request never waits for a
    thread. Its slot is given back when it really ends, even after its caller stopped waiting.
    """
    results: list[SendResult | None] = [None] * len(requests)
    wanted: dict[Any, list[int]] = {}
    for index, (account_id, _) in enumerate(requests):
        wanted.setdefault(account_id, []).append(index)
    executor = _executor_get()
    started: list[tuple[int, Future]] = []
    submitted, clock = time.time(), time.monotonic()
    with contextlib.ExitStack() as held:
        for account_id, indexes in wanted.items():
            if held.enter_context(bulkhead.hold(account_id)):
                granted = bulkhead.take(account_id, len(indexes))
                started += _submit(executor, account_id, [(i, requests[i][1]) for i in indexes[:granted]])
        for index, future in started:
            deadline = send_deadline(requests[index][1])
            give_up_at = clock + deadline + FAN_OUT_GRACE_SECONDS
            try:
                results[index] = future.result(timeout=max(give_up_at - time.monotonic(), 0))
            except FuturesTimeout:  # stuck where the watchdog cannot reach, such as a DNS lookup
                error = http.OutboundTimeout(f"no complete response within {deadline:g}s")
                results[index] = (error, submitted, time.monotonic() - clock)
    return results


# --- Claiming and recording -----------------------------------------------------------------------


def _lease_unleased(*, deliveries: QuerySet[Delivery], lease_id: uuid.UUID) -> None:
    now = timezone.now()
    deliveries.filter(unleased(now=now)).update(
        lease_id=lease_id, lease_expires_at=now + lease_duration(), updated_at=now
    )


def deliveries_claim(*, deliveries: QuerySet[Delivery], lease_id: uuid.UUID) -> list[Delivery]:
    """Lease those of `deliveries` that nobody holds (one conditional UPDATE); returns them, with
    their event and destination. The others are being sent by someone else right now."""
    _lease_unleased(deliveries=deliveries, lease_id=lease_id)
    return list(Delivery.objects.select_related("event", "destination").filter(lease_id=lease_id))


def _lease(*, deliveries: Sequence[Delivery], lease_id: uuid.UUID) -> list[Delivery]:
    """Lease those of `deliveries` (in memory, with their event and destination) still pending and
    held by nobody; returns them, their lease set in memory too."""
    pending = Delivery.objects.filter(pk__in=[d.pk for d in deliveries], status=Delivery.Status.PENDING)
    _lease_unleased(deliveries=pending, lease_id=lease_id)
    held = dict(Delivery.objects.filter(lease_id=lease_id).values_list("pk", "lease_expires_at"))
    for delivery in deliveries:
        if delivery.pk in held:
            delivery.lease_id, delivery.lease_expires_at = lease_id, held[delivery.pk]
    return [d for d in deliveries if d.pk in held]


# What an attempt's log entry holds, and what its outcome changes on the delivery.
ATTEMPT_FIELDS = (
    "delivery",
    "destination",
    "status_code",
    "response_body",
    "error",
    "duration_ms",
    "started_at",
    "finished_at",
)
OUTCOME_FIELDS = (
    "status",
    "last_status_code",
    "duration_ms",
    "error",
    "processed_at",
    "url",
    "http_method",
    "next_attempt_at",
)


@dataclass(frozen=True)
class _Change:
    """What one send changes on its delivery, and the attempt to log by field (None: not started)."""

    fields: dict[str, Any]
    attempt: dict[str, Any] | None
    number: int = 0  # the attempt's number in its delivery's log
    reauthorize: bool = False  # sent again at once with a new access token (REAUTHORIZED)
    # Whether the attempt counts against the retry schedule (attempt_count): not a throttled answer's.
    counted: bool = True
    # Why the answer turns the destination off (http.OutboundResponse.disables), else None.
    disables: str | None = None
    # A retryable failure that counts towards opening the circuit (not one put off by Retry-After).
    breaker_failure: bool = False
    # Put off by the answer's Retry-After (429/503), pending until next_attempt_at.
    put_off: bool = False

    @property
    def batched(self) -> bool:
        """Written by _deliveries_record's one UPDATE (an attempt that counts); else on its own."""
        return self.attempt is not None and self.counted


def _clean_text(text: str) -> str:
    return text.replace("\x00", "\ufffd")  # PostgreSQL text cannot hold NUL


def _outcome(
    *, delivery: Delivery, result: SendResult, retries: bool, reauthorize: bool, probe: bool
) -> _Change:
    """The delivery's fields after this attempt. A retryable failure with `retries` and tries left
    stays pending, due after the retry schedule's wait; with `reauthorize`, a 401 to an access token
    stays pending, to be sent again at once (REAUTHORIZED). A circuit's `probe` failing is held back
    again with the rest, no attempt of the schedule spent: a dead receiver's probes never use up a
    delivery's tries."""
    outcome, started, duration = result
    retry_after, throttled, disables = None, False, None
    if isinstance(outcome, http.OutboundResponse):
        status_code = outcome.status_code
        excerpt = outcome.body[:RESPONSE_EXCERPT_BYTES].decode("utf-8", errors="replace")
        error = "" if outcome.succeeded else f"destination answered HTTP {status_code}"
        succeeded = outcome.succeeded
        retry_after, throttled, disables = outcome.retry_after, outcome.throttled, outcome.disables
    else:
        status_code, excerpt, error, succeeded = None, "", str(outcome), False
    error = _clean_text(error)
    duration_ms = round(duration * 1000)
    finished_at = datetime.fromtimestamp(started + duration, tz=UTC)
    delay = None
    # Not when the answer also turns the destination off: nothing more is sent to it.
    reauthorize = (
        reauthorize and status_code == 401 and not disables and delivery.destination.auth_fetches_token
    )
    breaker_failure = not succeeded and outcome.retryable and not throttled
    probe_failed = probe and breaker_failure
    if reauthorize:
        error, delay = REAUTHORIZED, REAUTHORIZE_DELAY.total_seconds()
    elif probe_failed:
        now = timezone.now()
        delay = (breaker.held_until(destination=delivery.destination, now=now) - now).total_seconds()
    elif not succeeded and retries and outcome.retryable:
        if throttled:
            delay = retry_after_delay(retry_after=retry_after)
        else:
            delay = retry_delay(attempt_count=delivery.attempt_count + 1, retry_after=retry_after)
    if succeeded:
        status = Delivery.Status.SUCCEEDED
    elif delay is None:
        status = Delivery.Status.FAILED
    elif disables:  # would be tried again, but the destination is off now: kept for its resume
        status, delay, error = (
            Delivery.Status.PAUSED,
            None,
            _clean_text(f"{error}; {breaker.disabled_text(disables)}"),
        )
    else:
        status = Delivery.Status.PENDING
    # Put off by a 429/503's Retry-After, it spends no attempt of the schedule: the wait is the
    # receiver's; nor does a failed probe. (Failed or paused instead, the attempt counts as any other.)
    counted = not ((throttled or probe_failed) and status == Delivery.Status.PENDING)
    fields = {
        "status": status,
        "last_status_code": status_code,
        "duration_ms": duration_ms,
        # Held back with the rest: its circuit, closing, releases it with them.
        "error": breaker.probe_failed_text(error) if probe_failed else error,
        "processed_at": finished_at,
        "url": delivery.destination.url,
        "http_method": delivery.destination.http_method,
        "next_attempt_at": None if delay is None else finished_at + timedelta(seconds=delay),
    }
    attempt = {
        "delivery": delivery.pk,
        "destination": delivery.destination_id,
        "status_code": status_code,
        "response_body": _clean_text(excerpt),
        "error": error,
        "duration_ms": duration_ms,
        "started_at": datetime.fromtimestamp(started, tz=UTC),
        "finished_at": finished_at,
    }
    return _Change(
        fields=fields,
        attempt=attempt,
        number=delivery.attempt_count + 1,
        reauthorize=reauthorize,
        counted=counted,
        disables=disables,
        breaker_failure=breaker_failure,
        put_off=throttled and status == Delivery.Status.PENDING,
    )


# The lease ends with every write its holder makes.
_RELEASED = {"lease_id": None, "lease_expires_at": None, "dispatched_at": None}


def _not_started(now: datetime) -> _Change:
    fields = {
        "status": Delivery.Status.PENDING,
        "next_attempt_at": now + timedelta(seconds=random.uniform(*NOT_STARTED_DELAY_SECONDS)),  # noqa: S311
        "error": NOT_STARTED,
    }
    return _Change(fields=fields, attempt=None)


def _held(held: breaker.Held) -> _Change:
    fields = {"status": held.status, "next_attempt_at": held.until, "error": held.reason}
    return _Change(fields=fields, attempt=None)


def _deliveries_attempt(
    *, deliveries: Sequence[Delivery], payloads: Mapping[Any, Payload], reauthorize: bool, probes: set[int]
) -> list[_Change]:
    """Attempt each delivery (all with their destination) once, at once, within this process's
    limits; returns what each outcome changes, for _deliveries_record. Touches no database.

    With a broker, a retryable failure stays pending until its next try (the dispatcher sends it
    then). A delivery the limits did not let start stays pending, with no attempt spent. One whose
    destination may not be sent to now (send_blocked) is held as that says, with nothing sent; so
    is one whose circuit's probe is due but is not of `probes` (the pks this sender sends as probes).
    """
    if not deliveries:
        return []
    retries = broker.configured()
    now = timezone.now()
    blocked = []
    for delivery in deliveries:
        if delivery.pk in probes:  # checked when claimed
            held = None
        else:
            held = send_blocked(destination=delivery.destination, now=now)
            if held is None and breaker.circuit_open(destination=delivery.destination):
                held = breaker.probe_held(destination=delivery.destination, now=now)
        blocked.append(held)
    to_send = [d for d, held in zip(deliveries, blocked, strict=True) if held is None]
    results = iter(
        _fan_out(
            [
                (d.event.account_id, _outbound_request(delivery=d, payload=payloads[d.event_id]))
                for d in to_send
            ]
        )
    )
    now = timezone.now()
    changes = []
    for delivery, held in zip(deliveries, blocked, strict=True):
        if held is not None:
            changes.append(_held(held))
            continue
        result = next(results)
        changes.append(
            _not_started(now)
            if result is None
            else _outcome(
                delivery=delivery,
                result=result,
                retries=retries,
                reauthorize=reauthorize,
                probe=delivery.pk in probes,
            )
        )
    return changes


def _deliveries_record(
    *, deliveries: Sequence[Delivery], changes: Sequence[_Change], lease_id: uuid.UUID
) -> list[Delivery]:
    """Log the attempts and write each delivery's change (from _deliveries_attempt), in memory too,
    where the delivery is still held under `lease_id`; returns those whose lease was taken over
    (as their new holder has them). Run it inside a transaction.

    Two statements whatever the number of deliveries: one INSERT of the attempts, one UPDATE of the
    attempted deliveries still held. A delivery not started, or whose lease was taken over, is then
    written on its own (_outcome_write).
    """
    now = timezone.now()
    attempts = [change.attempt for change in changes if change.attempt is not None]
    rows_insert(
        model=Attempt, fields=ATTEMPT_FIELDS, rows=[[a[name] for name in ATTEMPT_FIELDS] for a in attempts]
    )
    quote = connection.ops.quote_name
    counted_and_released = ", ".join(
        [
            f"{quote('attempt_count')} = {quote('attempt_count')} + 1",
            *(f"{quote(name)} = NULL" for name in _RELEASED),
        ]
    )
    written = rows_update(
        model=Delivery,
        key="id",
        fields=[*OUTCOME_FIELDS, "updated_at"],
        rows=[
            (d.pk, *(c.fields[name] for name in OUTCOME_FIELDS), now)
            for d, c in zip(deliveries, changes, strict=True)
            if c.batched
        ],
        extra=counted_and_released,
        where=f"{quote('lease_id')} = %s",
        where_params=[db_value(model=Delivery, field="lease_id", value=lease_id)],
    )
    taken_over = []
    for delivery, change in zip(deliveries, changes, strict=True):
        if delivery.pk in written or _outcome_write(
            delivery=delivery, change=change, lease_id=lease_id, now=now
        ):
            for name, value in {**change.fields, **_RELEASED, "updated_at": now}.items():
                setattr(delivery, name, value)
            if change.batched:
                delivery.attempt_count += 1
        else:
            taken_over.append(delivery)
    metrics.attempts_recorded(
        attempts=attempts, statuses=[d.status for d in deliveries if d not in taken_over]
    )
    for delivery in taken_over:
        logger.warning(
            "delivery %s: lease %s ran out and was taken over before the attempt ended; "
            "the attempt is logged, the delivery left as its new holder has it",
            delivery.delivery_id,
            lease_id,
        )
        delivery.refresh_from_db()
    return taken_over


def deliveries_send(
    *,
    deliveries: Sequence[Delivery],
    lease_id: uuid.UUID,
    payloads: Mapping[Any, Payload],
    processed: Event | None = None,
    reauthorize: bool = True,
) -> None:
    """Attempt each delivery (all held under `lease_id`, all with their destination) once, at once,
    and record the outcomes in one transaction; with `processed` (the sync ingest's event), set its
    processed_at in that same transaction. Failures are recorded, never raised. With `reauthorize`,
    those a destination answered 401 with an access token are then sent once more (a new lease),
    with a new one."""
    _leases_extend_for_token_fetches(deliveries=deliveries, lease_id=lease_id)
    now = timezone.now()
    probes = breaker.probes_claim(
        deliveries=deliveries, now=now, lease_until=now + lease_duration(fetches_token=True)
    )
    changes = _deliveries_attempt(
        deliveries=deliveries, payloads=payloads, reauthorize=reauthorize, probes=probes
    )
    if not deliveries and processed is None:
        return
    with transaction.atomic():
        taken_over = _deliveries_record(deliveries=deliveries, changes=changes, lease_id=lease_id)
        if processed is not None:
            processed.processed_at = timezone.now()
            rows_update(
                model=Event,
                key="event_id",
                fields=["processed_at"],
                rows=[(processed.pk, processed.processed_at)],
            )
    # Turned off first: a circuit its probe's answer closes then pauses its backlog, not sends it.
    _receiver_control(deliveries=deliveries, changes=changes)
    _attempts_report(deliveries=deliveries, changes=changes, taken_over=taken_over, probes=probes)
    breaker.held_settle(deliveries=[d for d in deliveries if d not in taken_over])
    deliveries_settle_paused(
        deliveries=[d for d in deliveries if d.status == Delivery.Status.PAUSED and d not in taken_over]
    )

    again = [d for d, c in zip(deliveries, changes, strict=True) if c.reauthorize and d not in taken_over]
    if again:
        lease_id = uuid.uuid4()
        again = _lease(deliveries=_destinations_reread(deliveries=again), lease_id=lease_id)
        deliveries_send(deliveries=again, lease_id=lease_id, payloads=payloads, reauthorize=False)


def _destinations_reread(*, deliveries: Sequence[Delivery]) -> list[Delivery]:
    """Those of `deliveries` whose destination still exists, its state (_REREAD) read again (in
    memory): one disabled, or whose circuit opened, since their first send, by this send's answers
    or anyone, is held by send_blocked instead of sent once more."""
    stored = {
        row["pk"]: row
        for row in Destination.objects.filter(pk__in={d.destination_id for d in deliveries}).values(
            "pk", *_REREAD
        )
    }
    kept = [d for d in deliveries if d.destination_id in stored]
    for delivery in kept:
        for name in _REREAD:
            setattr(delivery.destination, name, stored[delivery.destination_id][name])
    return kept


# What a destination may have had changed by a send's answers, or by anyone, since it was read.
_REREAD = ("enabled", "disabled_reason", "consecutive_failures", "circuit_state", "next_probe_at")


def deliveries_settle_paused(*, deliveries: Sequence[Delivery]) -> list[Delivery]:
    """Make pending again, due as created, those of the paused `deliveries` whose destination is
    enabled by now, and hand them to the broker when there is one (else the next resume sends them).

    Whoever pauses a delivery calls this after its write commits, and a resume enables the
    destination before it reads the backlog: so a pausing that the resume did not see reads the
    destination enabled here, and no delivery is left paused behind a resume. Returns those moved
    (by this call or by the resume), updated in memory."""
    if not deliveries:
        return []
    enabled = set(
        Destination.objects.filter(pk__in={d.destination_id for d in deliveries}, enabled=True).values_list(
            "pk", flat=True
        )
    )
    moved = [d for d in deliveries if d.destination_id in enabled]
    if not moved:
        return []
    now = timezone.now()
    Delivery.objects.filter(pk__in=[d.pk for d in moved], status=Delivery.Status.PAUSED).update(
        status=Delivery.Status.PENDING, error="", next_attempt_at=F("created_at"), updated_at=now
    )
    for delivery in moved:
        delivery.status, delivery.error, delivery.next_attempt_at = (
            Delivery.Status.PENDING,
            "",
            delivery.created_at,
        )
    if broker.configured():
        deliveries_hand_over(delivery_pks=[d.pk for d in moved])
    return moved


def _receiver_control(*, deliveries: Sequence[Delivery], changes: Sequence[_Change]) -> None:
    """Disable the destinations whose answer said so (410 Gone, `webhook-delivery: disable`); the
    sender that turns one off raises the alert, once."""
    disabled: set[int] = set()
    for delivery, change in zip(deliveries, changes, strict=True):
        if change.disables and delivery.destination_id not in disabled:
            disabled.add(delivery.destination_id)
            if destination_disable(destination_id=delivery.destination_id, reason=change.disables):
                alerts.destination_disabled_alert(delivery=delivery, reason=change.disables)


# An attempt's line: what its outcome made of the delivery (pending: tried again later).
_OUTCOMES = {
    Delivery.Status.SUCCEEDED: "succeeded",
    Delivery.Status.PENDING: "retrying",
    Delivery.Status.FAILED: "failed",
    Delivery.Status.PAUSED: "paused",
}
ERROR_LOG_CHARS = 200


def _attempts_report(
    *,
    deliveries: Sequence[Delivery],
    changes: Sequence[_Change],
    taken_over: Sequence[Delivery],
    probes: set[int],
) -> None:
    """One INFO line per recorded attempt; the alert hook for deliveries that failed for good (this
    attempt's outcome written); the attempts counted by the circuit breaker (a probe not sent after
    all is given back)."""
    counted, unsent_probes = [], []
    for delivery, change in zip(deliveries, changes, strict=True):
        if change.attempt is None:
            if delivery.pk in probes:
                unsent_probes.append(delivery)
            continue
        status = change.fields["status"]
        logger.info(
            "attempt",
            extra={
                "event_id": str(delivery.event_id),
                "delivery_id": str(delivery.delivery_id),
                "destination_id": delivery.destination_id,
                "method": change.fields["http_method"],
                "attempt": change.number,
                "outcome": _OUTCOMES[status],
                "status_code": change.attempt["status_code"],
                "duration_ms": change.attempt["duration_ms"],
                "error": change.attempt["error"][:ERROR_LOG_CHARS] or None,
            },
        )
        if status == Delivery.Status.FAILED and delivery not in taken_over:
            alerts.delivery_failed_alert(delivery=delivery)
        counted.append(
            breaker.Counted(
                delivery=delivery,
                succeeded=status == Delivery.Status.SUCCEEDED,
                failed=change.breaker_failure,
                probe=delivery.pk in probes,
                put_off_until=change.fields["next_attempt_at"] if change.put_off else None,
            )
        )
    breaker.probes_release(deliveries=unsent_probes)
    breaker.attempts_count(attempts=counted)


def _outcome_write(*, delivery: Delivery, change: _Change, lease_id: uuid.UUID, now: datetime) -> bool:
    """Write one send's change to its delivery while the lease is still `lease_id`'s. If the lease
    ran out and was taken over, a success is still written when the delivery is pending and nobody
    holds it now (a forward move: it stops a needless resend); anything else only counts the attempt.
    True if the delivery took the change."""
    counted = {"attempt_count": F("attempt_count") + 1} if change.batched else {}
    write = {**change.fields, **counted, **_RELEASED, "updated_at": now}
    if Delivery.objects.filter(pk=delivery.pk, lease_id=lease_id).update(**write):
        return True
    if change.fields.get("status") == Delivery.Status.SUCCEEDED:
        free = Delivery.objects.filter(unleased(now=now), pk=delivery.pk, status=Delivery.Status.PENDING)
        if free.update(**write):
            return True
    if counted:  # the attempt happened and counts: count it, and move nothing else
        Delivery.objects.filter(pk=delivery.pk).update(**counted, updated_at=now)
    return False


def _fail_orphaned(*, deliveries: Sequence[Delivery], lease_id: uuid.UUID) -> None:
    """Fail for good the held deliveries whose destination was deleted: they cannot be sent."""
    now = timezone.now()
    failed = Delivery.objects.filter(pk__in=[d.pk for d in deliveries], lease_id=lease_id).update(
        status=Delivery.Status.FAILED,
        error="destination deleted",
        next_attempt_at=None,
        updated_at=now,
        **_RELEASED,
    )
    metrics.attempts_recorded(attempts=[], statuses=[Delivery.Status.FAILED] * failed)


# A task may start this early (clock skew between machines) and still count as due.
DUE_TOLERANCE = timedelta(seconds=2)


def delivery_attempt_due(*, delivery_pk: int) -> None:
    """The worker's step: attempt the delivery if it is pending, due and nobody holds it, and its
    destination's limits let it go now (else it is put off: server.services.limits).

    Does nothing otherwise (sent, failed for good, not due yet, or someone else's): a duplicate
    or late task is harmless, and a delivery that succeeded is never sent again by a worker.
    """
    lease_id = uuid.uuid4()
    due = Delivery.objects.filter(
        pk=delivery_pk,
        status=Delivery.Status.PENDING,
        next_attempt_at__lte=timezone.now() + DUE_TOLERANCE,
    )
    claimed = deliveries_claim(deliveries=due, lease_id=lease_id)
    orphaned = [d for d in claimed if d.destination is None]
    _fail_orphaned(deliveries=orphaned, lease_id=lease_id)
    live, now = [d for d in claimed if d.destination is not None], timezone.now()
    # Held back anyway (disabled, circuit open): not worth a limit's lock or a place in its rate.
    held = [d for d in live if send_blocked(destination=d.destination, now=now) is not None]
    sendable = held + limits.deliveries_admit(
        deliveries=[d for d in live if d not in held], lease_id=lease_id
    )
    # Its lines carry the id of the request that ingested the event, whoever published the task.
    payloads = event_payloads(events=(d.event for d in sendable))
    with request_id_bound(claimed[0].event.request_id if claimed else None):
        deliveries_send(deliveries=sendable, lease_id=lease_id, payloads=payloads)
