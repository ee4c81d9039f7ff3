"""Handing pending deliveries to the workers through the broker (queue mode and background retries).

The database is the source of truth; a task carries only a delivery's id, and a delivery's
`dispatched_at` says it was handed to the broker and no worker has taken it yet. The ingest (and a
queue-mode retry) publishes right after its commit, bounded by server.broker, and marks what the
broker took; everything else — retries when due, what could not be published, what the broker lost,
what a dead sender left — is published by the dispatcher, which claims due rows with
SELECT ... FOR UPDATE SKIP LOCKED and marks them in the same transaction (so two dispatchers never
publish the same row), then unmarks what the broker did not take.
"""

import logging
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import Q
from django.utils import timezone

from server import broker
from server.models import Delivery, DispatcherHeartbeat
from server.services.breaker import probes_schedule

# /readyz reports the dispatcher stale when its newest heartbeat is older than this many rounds (and
# never sooner than HEARTBEAT_STALE_MIN: a round with a backlog takes up to two broker bounds).
HEARTBEAT_STALE_ROUNDS = 5
HEARTBEAT_STALE_MIN = timedelta(seconds=10)
# A worker takes a message within this long of its publication unless the queue is backed up
# (see _lost_before).
LOST_AFTER = timedelta(seconds=5)

logger = logging.getLogger(__name__)


def queue_mode() -> bool:
    """Does every attempt happen in a worker (DATAPUSHER_DELIVERY_MODE=queue)?"""
    return settings.DATAPUSHER_DELIVERY_MODE == "queue"


def deliveries_hand_over(*, delivery_pks: Sequence[int]) -> int:
    """Publish pending, due, unheld deliveries now and mark those the broker took as handed over;
    the others stay unmarked for the dispatcher. Returns how many were published. Never raises for
    the broker or for the mark: at worst the dispatcher publishes a delivery a second time."""
    if not delivery_pks or not broker.accepting():
        return 0
    published = broker.publish(delivery_pks=delivery_pks)
    now = timezone.now()
    try:
        # Only those still waiting for a worker: one may already have been taken, or sent and
        # rescheduled for later, by the time the broker has answered.
        Delivery.objects.filter(
            pk__in=delivery_pks[:published],
            status=Delivery.Status.PENDING,
            next_attempt_at__lte=now,
            lease_id__isnull=True,
            dispatched_at__isnull=True,
        ).update(dispatched_at=now)
    except DatabaseError:
        logger.warning(
            "could not mark %s published deliveries; the dispatcher will publish them again", published
        )
    return published


def _lost_before(now: datetime) -> datetime:
    """Deliveries handed to the broker before the moment returned, and not taken by a worker since,
    are presumed lost (the broker was flushed, or restarted without persistence; a dispatcher or a
    worker died between two steps). That is 5 s ago when the broker's queue holds fewer messages
    than there are such deliveries — not all of them can still be in it — and
    DATAPUSHER_REDISPATCH_AFTER ago in any case. Handing over again what was not lost costs only a
    duplicate message, which finds its delivery taken and does nothing."""
    handed_over_before = now - LOST_AFTER
    waiting = Delivery.objects.filter(
        status=Delivery.Status.PENDING,
        next_attempt_at__lte=now,
        lease_id__isnull=True,
        dispatched_at__lt=handed_over_before,
    ).count()
    if waiting:
        depth = broker.queue_depth()
        if depth is not None and depth < waiting:
            return handed_over_before
    return now - timedelta(seconds=settings.DATAPUSHER_REDISPATCH_AFTER)


def deliveries_dispatch(*, limit: int) -> int:
    """Publish up to `limit` due pending deliveries that no worker has: never handed over, handed
    over but lost, or abandoned by a sender whose lease ran out (a killed worker or web process),
    and for each circuit whose probe is due, one it held back (breaker.probes_schedule). Returns how
    many were published; safe to run in several processes at once."""
    now = timezone.now()
    probes_schedule(now=now, limit=limit)
    abandoned = Q(lease_id__isnull=False, lease_expires_at__lt=now)
    to_hand_over = Q(lease_id__isnull=True) & (
        Q(dispatched_at__isnull=True) | Q(dispatched_at__lt=_lost_before(now))
    )
    with transaction.atomic():
        pks = list(
            Delivery.objects.select_for_update(skip_locked=True)
            .filter(status=Delivery.Status.PENDING, next_attempt_at__lte=now)
            .filter(abandoned | to_hand_over)
            .order_by("next_attempt_at")
            .values_list("pk", flat=True)[:limit]
        )
        if not pks:
            return 0
        # An abandoned lease is cleared: its holder, if it ever comes back, writes nothing but its attempt.
        Delivery.objects.filter(pk__in=pks).update(
            dispatched_at=now, lease_id=None, lease_expires_at=None, updated_at=now
        )
    published = broker.publish(delivery_pks=pks)
    if published < len(pks):
        Delivery.objects.filter(pk__in=pks[published:], dispatched_at=now, lease_id__isnull=True).update(
            dispatched_at=None
        )
        logger.warning("could not publish %s due deliveries; trying again next round", len(pks) - published)
    return published


def deliveries_schedule_now(*, deliveries: Sequence[Delivery], lease_id: uuid.UUID) -> None:
    """Make deliveries held under `lease_id` pending and due now, release them and hand them over,
    for the workers to send (queue mode). Updates them in memory too."""
    now = timezone.now()
    pks = [d.pk for d in deliveries]
    Delivery.objects.filter(pk__in=pks, lease_id=lease_id).update(
        status=Delivery.Status.PENDING,
        next_attempt_at=now,
        lease_id=None,
        lease_expires_at=None,
        dispatched_at=None,
        updated_at=now,
    )
    for delivery in deliveries:
        delivery.status, delivery.next_attempt_at = Delivery.Status.PENDING, now
    deliveries_hand_over(delivery_pks=pks)


def heartbeat_stale_after() -> timedelta:
    """How old the newest dispatcher heartbeat may be before the dispatcher counts as stale."""
    return max(
        timedelta(seconds=HEARTBEAT_STALE_ROUNDS * settings.DATAPUSHER_DISPATCH_INTERVAL), HEARTBEAT_STALE_MIN
    )


def dispatcher_beat(*, name: str) -> None:
    """Record that the dispatcher `name` completed a round now (one upsert)."""
    DispatcherHeartbeat.objects.bulk_create(
        [DispatcherHeartbeat(name=name, beat_at=timezone.now())],
        update_conflicts=True,
        unique_fields=["name"],
        update_fields=["beat_at"],
    )


def dispatcher_forget(*, name: str) -> None:
    """Remove the heartbeat of the dispatcher `name`, which is stopping (not stale: gone)."""
    DispatcherHeartbeat.objects.filter(name=name).delete()
