"""The delivery log's write side: sending deliveries again by hand, and retention."""

import itertools
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from destinations.auth import AuthType
from server import broker
from server.models import Delivery, Event
from server.services.delivery import (
    deliveries_claim,
    deliveries_send,
    event_payloads,
    longest_wait_seconds,
    send_blocked,
)
from server.services.dispatch import deliveries_schedule_now, queue_mode

# Why a delivery selected for resending was not sent (Resend.skipped's keys).
SKIPPED_SUCCEEDED = "had succeeded"
SKIPPED_DESTINATION_DELETED = "destination deleted"
SKIPPED_BUSY = "being sent right now"
SKIPPED_OUT_OF_TIME = "not started: the action's time was up"


class DestinationDeleted(Exception):
    """The delivery's destination no longer exists, so it cannot be sent again."""


class DestinationDisabled(Exception):
    """The delivery's destination is disabled: nothing is sent to it until it is resumed."""

    def __init__(self, *, destination_id: int, reason: str) -> None:
        super().__init__(reason)
        self.destination_id, self.reason = destination_id, reason


class DeliveryBusy(Exception):
    """Someone is sending the delivery right now (it is leased); its outcome is not known yet."""


def deliveries_redeliver(*, deliveries: QuerySet[Delivery]) -> list[Delivery]:
    """Send the given deliveries again, with their webhook-ids, to their destinations as configured
    now. Each is claimed first: one being sent right now is skipped, as is one whose destination
    was deleted. Queue mode: they become pending and due now, for the workers; sync mode: they are
    sent before this returns, within the usual deadline and limits. Returns those taken, by id."""
    return _redeliver(deliveries=deliveries, queued=queue_mode())


def _redeliver(*, deliveries: QuerySet[Delivery], queued: bool) -> list[Delivery]:
    lease_id = uuid.uuid4()
    claimed = deliveries_claim(deliveries=deliveries.filter(destination__isnull=False), lease_id=lease_id)
    if queued:
        deliveries_schedule_now(deliveries=claimed, lease_id=lease_id)
    else:
        deliveries_send(
            deliveries=claimed, lease_id=lease_id, payloads=event_payloads(events={d.event for d in claimed})
        )
    return sorted(claimed, key=lambda d: d.pk)


class ActionClock:
    """The time bound of an operator's action that sends (the admin's): a send (or a group of them,
    each within the usual deadline) may start only while it could end within
    DATAPUSHER_ADMIN_ACTION_SECONDS of the action's start; the first may always start."""

    def __init__(self) -> None:
        self.time_up_at = time.monotonic() + settings.DATAPUSHER_ADMIN_ACTION_SECONDS
        self.started = False

    def may_start(self, *, fetches_token: bool = False) -> bool:
        """Whether the next send may start. With `fetches_token` (it has a delivery to a destination
        with OAuth credentials) it may take longer: a token fetch, the send, and both again after a
        401 (delivery.longest_wait_seconds)."""
        longest = longest_wait_seconds(fetches_token=fetches_token)
        if self.started and time.monotonic() + longest > self.time_up_at:
            return False
        self.started = True
        return True


@dataclass(frozen=True)
class Resend:
    """What deliveries_resend did: the deliveries it took (with their new outcome when sent here),
    whether it queued them for the workers, and how many of the others it skipped, by reason."""

    selected: int
    taken: list[Delivery]
    queued: bool
    skipped: Counter[str] = field(default_factory=Counter)


def deliveries_resend(*, deliveries: QuerySet[Delivery], failed_only: bool = False) -> Resend:
    """Send the given deliveries again on behalf of an operator (the admin's actions), those that
    have not succeeded only with `failed_only`. With a broker they are queued for the workers, due
    now. Without one they are sent from here, DATAPUSHER_ADMIN_SEND_CONCURRENCY at once, each
    within the usual deadline; a group is started only while it can end within
    DATAPUSHER_ADMIN_ACTION_SECONDS of the start (the first always is), the rest are left as they
    were. One deleted meanwhile or being sent by someone else is skipped, with its reason."""
    rows = list(deliveries.order_by("pk").values_list("pk", "status", "destination_id"))
    skipped: Counter[str] = Counter()
    candidates = []
    for pk, status, destination_id in rows:
        if failed_only and status == Delivery.Status.SUCCEEDED:
            skipped[SKIPPED_SUCCEEDED] += 1
        elif destination_id is None:
            skipped[SKIPPED_DESTINATION_DELETED] += 1
        else:
            candidates.append(pk)
    queued = broker.configured()
    if queued:
        taken = _redeliver(deliveries=Delivery.objects.filter(pk__in=candidates), queued=True)
        tried = len(candidates)
    else:
        taken, tried = [], 0
        clock = ActionClock()
        # Those whose send may fetch an OAuth access token (and send again after a 401) take longer.
        fetching = set(
            deliveries.filter(destination__auth__type=AuthType.OAUTH2_CLIENT_CREDENTIALS).values_list(
                "pk", flat=True
            )
        )
        for group in itertools.batched(candidates, settings.DATAPUSHER_ADMIN_SEND_CONCURRENCY, strict=False):
            if not clock.may_start(fetches_token=not fetching.isdisjoint(group)):
                skipped[SKIPPED_OUT_OF_TIME] += len(candidates) - tried
                break
            taken += _redeliver(deliveries=Delivery.objects.filter(pk__in=group), queued=False)
            tried += len(group)
    if tried > len(taken):
        skipped[SKIPPED_BUSY] += tried - len(taken)
    return Resend(selected=len(rows), taken=taken, queued=queued, skipped=skipped)


def event_redeliver(*, event: Event, include_succeeded: bool = False) -> list[Delivery]:
    """Send the event's deliveries that have not succeeded again — failed ones, and pending ones
    nobody is sending (such as those a crash left behind); all of them with `include_succeeded`."""
    deliveries = event.deliveries.all()
    if not include_succeeded:
        deliveries = deliveries.exclude(status=Delivery.Status.SUCCEEDED)
    return deliveries_redeliver(deliveries=deliveries)


def delivery_retry(*, delivery: Delivery) -> Delivery:
    """Send one delivery again. Raises DestinationDeleted when its destination is gone,
    DestinationDisabled when it is disabled (a paused delivery is sent by resuming it), and
    DeliveryBusy when someone is sending it right now."""
    if delivery.destination is not None:
        held = send_blocked(destination=delivery.destination, now=timezone.now())
        if held is not None and held.status == Delivery.Status.PAUSED:
            raise DestinationDisabled(destination_id=delivery.destination_id, reason=held.reason)
    sent = deliveries_redeliver(deliveries=Delivery.objects.filter(pk=delivery.pk))
    if sent:
        return sent[0]
    if not Delivery.objects.filter(pk=delivery.pk, destination__isnull=False).exists():
        raise DestinationDeleted
    raise DeliveryBusy


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
