"""The circuit breaker: a destination that keeps failing is left alone for a while, its deliveries
held back without spending attempts, then tried with one of them (the probe).

- closed → open: DATAPUSHER_BREAKER_FAILURES retryable failures in a row (timeouts, connection
  errors, 5xx, 429 without Retry-After; counted in Destination.consecutive_failures). The next probe
  is due a cooldown later: DATAPUSHER_BREAKER_COOLDOWN, doubled on each reopening up to
  DATAPUSHER_BREAKER_COOLDOWN_MAX.
- open: its deliveries stay pending, held (next_attempt_at well after the probe, `error` starting
  with CIRCUIT_OPEN), no attempt spent. Once the probe is due, the dispatcher makes the oldest of
  them due now.
- open → half_open: the first sender to find the probe due claims it (its lease's end marks the
  claim in next_probe_at) and sends one delivery.
- half_open → closed: the probe was answered other than with a retryable failure. What the circuit
  held is due again as created, so the backlog drains oldest first (a retry put off by its schedule
  keeps its time); a disabled destination's is paused instead.
- half_open → open: the probe failed (held again with the rest, no attempt spent), for a longer
  cooldown; after DATAPUSHER_DISABLE_AFTER open, the destination is disabled (the alert raised). A
  probe put off by Retry-After leaves it open until then.
- A success whose sender had seen failures or the circuit open closes it too.

Each move is one conditional UPDATE naming the state it expects (and for a probe's end, its claim),
so of concurrent senders exactly one makes it; a circuit whose prober died is claimable again once
the prober's lease has run out. With DATAPUSHER_BREAKER_FAILURES=0 nothing is held back, and a
circuit left open closes on the next success.
"""

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import F, OuterRef, Q, QuerySet, Subquery
from django.utils import timezone

from destinations.models import CircuitState, Destination
from destinations.services import destination_disable
from server import metrics
from server.models import Delivery, unleased
from server.services import alerts

# The error of a delivery held back by an open circuit starts with this.
CIRCUIT_OPEN = "circuit open"

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Held:
    """Why a delivery is not sent now, and how it is kept: `paused` (its destination is disabled)
    or `pending`, due at `until` (its circuit is open)."""

    reason: str
    status: str
    until: datetime | None = None


@dataclass(frozen=True)
class Counted:
    """One recorded attempt as the breaker counts it: whether it succeeded; whether it was a
    retryable failure, which counts towards opening the circuit; whether it was its circuit's probe;
    and, for an answer that put it off (429/503 with Retry-After), when it is due again."""

    delivery: Delivery
    succeeded: bool
    failed: bool
    probe: bool
    put_off_until: datetime | None = None


# Cooldowns stop doubling here (2**20 minutes is far past any DATAPUSHER_BREAKER_COOLDOWN_MAX), and
# trips stop being counted (the field's range).
COOLDOWN_DOUBLINGS_MAX = 20
TRIPS_MAX = 30000


def breaker_on() -> bool:
    return settings.DATAPUSHER_BREAKER_FAILURES > 0


def circuit_open(*, destination: Destination) -> bool:
    """Whether the destination's circuit (as read in memory) is open or half-open, and the breaker
    on: with DATAPUSHER_BREAKER_FAILURES=0, a circuit left open holds nothing back."""
    return breaker_on() and destination.circuit_state != CircuitState.CLOSED


def disabled_text(reason: str) -> str:
    """The `error` of a delivery kept paused because its destination is disabled for `reason`."""
    return f"the destination is disabled ({reason})" if reason else "the destination is disabled"


def cooldown(*, trips: int) -> timedelta:
    """How long the circuit stays open after its `trips`-th opening since it was last closed."""
    doublings = min(max(trips - 1, 0), COOLDOWN_DOUBLINGS_MAX)
    seconds = settings.DATAPUSHER_BREAKER_COOLDOWN * 2**doublings
    return timedelta(seconds=min(seconds, settings.DATAPUSHER_BREAKER_COOLDOWN_MAX))


def held_until(*, destination: Destination, now: datetime) -> datetime:
    """Held-back deliveries wait well past the probe: closing the circuit makes them due again,
    and the dispatcher makes one due for the probe. (Should both be missed, they come back then.)"""
    probe_at = max(destination.next_probe_at or now, now)
    return probe_at + timedelta(seconds=settings.DATAPUSHER_BREAKER_COOLDOWN_MAX)


def _held(*, destination: Destination, now: datetime, why: str) -> Held:
    return Held(
        reason=f"{CIRCUIT_OPEN}: {why}; still pending",
        status=Delivery.Status.PENDING,
        until=held_until(destination=destination, now=now),
    )


def circuit_held(*, destination: Destination, now: datetime) -> Held | None:
    """Whether the destination's circuit holds its deliveries back now (as read in memory): None
    when it is closed, or open with its probe due (the sender then claims it: probes_claim)."""
    if not circuit_open(destination=destination) or destination.next_probe_at <= now:
        return None
    return _held(
        destination=destination,
        now=now,
        why=f"{destination.consecutive_failures} failures in a row; "
        f"next probe at {destination.next_probe_at.isoformat(timespec='seconds')}",
    )


def probe_held(*, destination: Destination, now: datetime) -> Held:
    """How a delivery is held that found its circuit's probe due, but is not the probe."""
    return _held(destination=destination, now=now, why="a probe is being sent")


def probe_failed_text(error: str) -> str:
    """The `error` of a probe that failed: held back again with the rest."""
    return f"{CIRCUIT_OPEN}: the probe failed ({error}); still pending"


def probes_claim(*, deliveries: Sequence[Delivery], now: datetime, lease_until: datetime) -> set[int]:
    """For each enabled destination among the deliveries' whose circuit is open with its probe due
    (read in memory), try to claim the probe (one conditional UPDATE each: open or a dead prober's
    half_open, due) until `lease_until`, which stays the claim's mark in next_probe_at. Returns the
    pks of the deliveries to send as probes: the oldest of each destination claimed. The in-memory
    destinations are updated either way."""
    due: dict[int, Delivery] = {}
    for delivery in sorted(deliveries, key=lambda d: d.pk):
        destination = delivery.destination
        if destination.enabled and circuit_open(destination=destination) and destination.next_probe_at <= now:
            due.setdefault(destination.pk, delivery)
    probes = set()
    for destination_id, delivery in due.items():
        claimed = Destination.objects.filter(
            pk=destination_id,
            circuit_state__in=[CircuitState.OPEN, CircuitState.HALF_OPEN],
            next_probe_at__lte=now,
        ).update(circuit_state=CircuitState.HALF_OPEN, next_probe_at=lease_until)
        for other in deliveries:
            if other.destination_id == destination_id:
                other.destination.circuit_state = CircuitState.HALF_OPEN
                other.destination.next_probe_at = lease_until
        if claimed:
            probes.add(delivery.pk)
    return probes


def _probe_ended(*, delivery: Delivery, **fields) -> int:
    """Move the circuit of `delivery`'s probe on, if that probe still holds it (half-open, marked
    with this sender's claim): one conditional UPDATE; 1 if it moved."""
    return Destination.objects.filter(
        pk=delivery.destination_id,
        circuit_state=CircuitState.HALF_OPEN,
        next_probe_at=delivery.destination.next_probe_at,
    ).update(**fields)


def probes_release(*, deliveries: Iterable[Delivery]) -> None:
    """Give back the probes of these deliveries, not sent after all (no free slot): the circuit is
    open again, its probe due now (only where the claim is still this sender's)."""
    for delivery in deliveries:
        _probe_ended(delivery=delivery, circuit_state=CircuitState.OPEN, next_probe_at=timezone.now())


def attempts_count(*, attempts: Sequence[Counted]) -> None:
    """Count recorded attempts on their destinations and move their circuits.

    A success resets the count (only a count that was not 0 when read: a failure counted since, by
    another sender, happened alongside it). It also closes the circuit when its sender had seen it
    open or failing (read in memory): any such success, not only the probe's. Retryable failures add
    to the count, relative to what is stored, so concurrent senders add up; the sender whose
    failures take it to DATAPUSHER_ALERT_AFTER_FAILURES alerts; one of those that read it at
    DATAPUSHER_BREAKER_FAILURES or above, the circuit closed, opens the circuit. A probe answered
    otherwise (a permanent 4xx: the receiver is up) closes it too; a failed probe reopens it; a
    probe put off by Retry-After leaves it open until then. A destination that both succeeded and
    failed here counts as answering. Never raises: a write that could not be made is logged."""
    answered = {a.delivery.destination_id for a in attempts if a.succeeded}
    answered |= {
        a.delivery.destination_id for a in attempts if a.probe and not a.failed and a.put_off_until is None
    }
    failed: dict[int, list[Counted]] = {}
    for attempt in attempts:
        if attempt.failed and attempt.delivery.destination_id not in answered:
            failed.setdefault(attempt.delivery.destination_id, []).append(attempt)
    to_reset, to_close = set(), set()
    for attempt in attempts:
        destination = attempt.delivery.destination
        if attempt.delivery.destination_id not in answered or destination is None:  # None: deleted meanwhile
            continue
        if attempt.succeeded and destination.consecutive_failures:
            to_reset.add(destination.pk)
        if destination.circuit_state != CircuitState.CLOSED or destination.consecutive_failures:
            to_close.add(destination.pk)
    try:
        if to_reset:
            Destination.objects.filter(pk__in=to_reset, consecutive_failures__gt=0).update(
                consecutive_failures=0
            )
        if to_close:
            circuits_close(destination_ids=to_close)
        for attempt in attempts:
            if attempt.probe and attempt.put_off_until is not None:
                _probe_ended(
                    delivery=attempt.delivery,
                    circuit_state=CircuitState.OPEN,
                    next_probe_at=attempt.put_off_until,
                )
        for attempts_failed in failed.values():
            _failures_count(attempts=attempts_failed)
    except DatabaseError as err:
        logger.warning("destination failure counts not updated: %s", type(err).__name__)


def _failures_count(*, attempts: Sequence[Counted]) -> None:
    """Add one destination's failed attempts to its count; alert, open or reopen as that says."""
    last = attempts[-1].delivery
    stored = Destination.objects.filter(pk=last.destination_id)
    with transaction.atomic():  # the UPDATE's row lock holds until the count is read back
        if not stored.update(consecutive_failures=F("consecutive_failures") + len(attempts)):
            return  # deleted meanwhile
        count, state = stored.values_list("consecutive_failures", "circuit_state").get()
    if count - len(attempts) < settings.DATAPUSHER_ALERT_AFTER_FAILURES <= count:
        alerts.destination_failing_alert(delivery=last, consecutive_failures=count)
    if any(a.probe for a in attempts):
        _circuit_reopen(delivery=next(a.delivery for a in attempts if a.probe))
    elif breaker_on() and state == CircuitState.CLOSED and count >= settings.DATAPUSHER_BREAKER_FAILURES:
        _circuit_open(delivery=last, consecutive_failures=count)


def _circuit_open(*, delivery: Delivery, consecutive_failures: int) -> None:
    now = timezone.now()
    next_probe_at = now + cooldown(trips=1)
    opened = Destination.objects.filter(pk=delivery.destination_id, circuit_state=CircuitState.CLOSED).update(
        circuit_state=CircuitState.OPEN,
        circuit_opened_at=now,
        circuit_trips=1,
        next_probe_at=next_probe_at,
    )
    if opened:
        metrics.circuit_moved(to=CircuitState.OPEN)
        alerts.circuit_opened_alert(
            delivery=delivery, consecutive_failures=consecutive_failures, next_probe_at=next_probe_at
        )


def _circuit_reopen(*, delivery: Delivery) -> None:
    """The probe `delivery` failed: open the circuit again for a longer cooldown (if the probe still
    holds it); open for DATAPUSHER_DISABLE_AFTER by then, disable the destination."""
    destination, now = delivery.destination, timezone.now()
    trips = min(destination.circuit_trips + 1, TRIPS_MAX)
    reopened = _probe_ended(
        delivery=delivery,
        circuit_state=CircuitState.OPEN,
        circuit_trips=trips,
        next_probe_at=now + cooldown(trips=trips),
    )
    if not reopened:
        return
    metrics.circuit_moved(to=CircuitState.OPEN)
    opened_at = destination.circuit_opened_at or now
    if now - opened_at >= timedelta(seconds=settings.DATAPUSHER_DISABLE_AFTER):
        reason = f"{CIRCUIT_OPEN} since {opened_at.isoformat(timespec='seconds')}"
        if destination_disable(destination_id=destination.pk, reason=reason):
            circuits_close(destination_ids=[destination.pk])
            metrics.circuit_moved(to="disabled")
            alerts.destination_disabled_alert(delivery=delivery, reason=reason)


def _held_backlog(*, destination_ids: Iterable[int], now: datetime) -> QuerySet[Delivery]:
    """The deliveries of these destinations that an open circuit held back (or a probe that failed),
    still pending and held by nobody."""
    return Delivery.objects.filter(
        unleased(now=now),
        destination_id__in=destination_ids,
        status=Delivery.Status.PENDING,
        error__startswith=CIRCUIT_OPEN,
    )


def _held_release(*, destinations: Iterable[tuple[int, bool, str]], now: datetime) -> int:
    """Make what the circuits of these (destination id, enabled, disabled_reason) held back due
    again as created, so that the backlog drains oldest first; a disabled destination's is paused,
    with why. Returns how many deliveries moved."""
    destinations = list(destinations)
    enabled = [pk for pk, is_enabled, _ in destinations if is_enabled]
    moved = _held_backlog(destination_ids=enabled, now=now).update(
        next_attempt_at=F("created_at"), error="", updated_at=now
    )
    for pk, is_enabled, reason in destinations:
        if not is_enabled:
            moved += _held_backlog(destination_ids=[pk], now=now).update(
                status=Delivery.Status.PAUSED,
                error=disabled_text(reason),
                next_attempt_at=None,
                updated_at=now,
            )
    return moved


def circuits_close(*, destination_ids: Iterable[int]) -> int:
    """Close the destinations' circuits (those not closed), then release what they held back
    (_held_release). Returns how many deliveries were moved."""
    now = timezone.now()
    rows = list(
        Destination.objects.filter(pk__in=destination_ids)
        .exclude(circuit_state=CircuitState.CLOSED)
        .values_list("pk", "enabled", "disabled_reason")
    )
    if not rows:
        return 0
    closed = (
        Destination.objects.filter(pk__in=[pk for pk, _, _ in rows])
        .exclude(circuit_state=CircuitState.CLOSED)
        .update(
            circuit_state=CircuitState.CLOSED,
            circuit_opened_at=None,
            circuit_trips=0,
            next_probe_at=None,
            consecutive_failures=0,
        )
    )
    for _ in range(closed):
        metrics.circuit_moved(to=CircuitState.CLOSED)
    return _held_release(destinations=rows, now=now)


def held_settle(*, deliveries: Sequence[Delivery]) -> None:
    """Release those of the deliveries just held back by a circuit (their write committed) whose
    circuit is closed by now, or the breaker off. Whoever holds a delivery calls this after its
    write, and circuits_close closes a circuit before it releases its backlog: so a delivery held
    while a circuit closed is released by one of the two, never left waiting for a probe."""
    held = [d for d in deliveries if d.status == Delivery.Status.PENDING and d.error.startswith(CIRCUIT_OPEN)]
    if not held:
        return
    stored = Destination.objects.filter(pk__in={d.destination_id for d in held})
    if breaker_on():
        stored = stored.filter(circuit_state=CircuitState.CLOSED)
    _held_release(destinations=stored.values_list("pk", "enabled", "disabled_reason"), now=timezone.now())


def probes_schedule(*, now: datetime, limit: int) -> int:
    """The dispatcher's step: for up to `limit` circuits whose probe is due (the longest due first),
    make the oldest delivery they hold back due now, so that a worker sends it as the probe.
    Returns how many."""
    if not breaker_on():
        return 0
    due = Destination.objects.filter(~Q(circuit_state=CircuitState.CLOSED), next_probe_at__lte=now)
    oldest = (
        Delivery.objects.filter(
            unleased(now=now),
            destination_id=OuterRef("pk"),
            status=Delivery.Status.PENDING,
        )
        .order_by("pk")
        .values("pk")[:1]
    )
    pks = list(
        due.annotate(probe=Subquery(oldest))
        .filter(probe__isnull=False)
        .order_by("next_probe_at")
        .values_list("probe", flat=True)[:limit]
    )
    return Delivery.objects.filter(pk__in=pks, next_attempt_at__gt=now).update(next_attempt_at=now)
