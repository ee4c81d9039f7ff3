"""Handing pending deliveries to the workers through the broker (queue mode and background retries).

The database is the source of truth; a task carries only a delivery's id. The ingest publishes right
after its commit, bounded by server.broker (never more than DATAPUSHER_PUBLISH_TIMEOUT); everything
else — retries when due, what could not be published, what the broker lost, what a dead worker left
— is published by the dispatcher, which claims due rows with SELECT ... FOR UPDATE SKIP LOCKED
(so two dispatchers never publish the same row) and marks what it handed over (`dispatched_at`).
"""

import logging
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from server import broker
from server.models import Delivery

# A worker takes a message within this long of its publication unless the queue is backed up
# (see _lost_before).
LOST_AFTER = timedelta(seconds=5)

logger = logging.getLogger(__name__)


def dispatch_mark(now: datetime) -> datetime | None:
    """The dispatched_at to store on deliveries about to be published: None when the broker is
    resting after a failure (the dispatcher will publish them instead)."""
    return now if broker.accepting() else None


def deliveries_publish(*, delivery_pks: Sequence[int], mark: datetime | None) -> int:
    """Publish deliveries just marked dispatched at `mark`; for those the broker does not take,
    clear the mark so the dispatcher publishes them as soon as the broker answers. Returns how many
    were published."""
    if mark is None or not delivery_pks:
        return 0
    published = broker.publish(delivery_pks=delivery_pks)
    if published < len(delivery_pks):
        Delivery.objects.filter(
            pk__in=delivery_pks[published:], dispatched_at=mark, lease_id__isnull=True
        ).update(dispatched_at=None)
    return published


def _lost_before(now: datetime) -> datetime | None:
    """Deliveries handed to the broker before the moment returned, and not taken by a worker since,
    are presumed lost by the broker (flushed, restarted without persistence): when its queue holds
    fewer messages than there are such deliveries, not all of them can still be in it. None when
    nothing is presumed lost. Handing over again what was not lost costs only a duplicate message,
    which finds its delivery taken and does nothing."""
    handed_over_before = now - LOST_AFTER
    waiting = Delivery.objects.filter(
        status=Delivery.Status.PENDING,
        next_attempt_at__lte=now,
        lease_id__isnull=True,
        dispatched_at__lt=handed_over_before,
    ).count()
    if not waiting:
        return None
    depth = broker.queue_depth()
    return handed_over_before if depth is not None and depth < waiting else None


def deliveries_dispatch(*, limit: int) -> int:
    """Publish up to `limit` due pending deliveries that no worker has: never handed over, handed
    over but lost by the broker, or abandoned by a sender whose lease ran out (a killed worker).
    Returns how many were published; safe to run in several processes at once."""
    now = timezone.now()
    abandoned = Q(lease_id__isnull=False, lease_expires_at__lt=now)
    to_hand_over = Q(dispatched_at__isnull=True)
    if lost_before := _lost_before(now):
        to_hand_over |= Q(dispatched_at__lt=lost_before)
    with transaction.atomic():
        pks = list(
            Delivery.objects.select_for_update(skip_locked=True)
            .filter(status=Delivery.Status.PENDING, next_attempt_at__lte=now)
            .filter(abandoned | (Q(lease_id__isnull=True) & to_hand_over))
            .order_by("next_attempt_at")
            .values_list("pk", flat=True)[:limit]
        )
        if not pks:
            return 0
        # An abandoned lease is cleared: its holder, if it ever comes back, writes nothing but its attempt.
        Delivery.objects.filter(pk__in=pks).update(
            dispatched_at=now, lease_id=None, lease_expires_at=None, updated_at=now
        )
    published = deliveries_publish(delivery_pks=pks, mark=now)
    if published < len(pks):
        logger.warning("could not publish %s due deliveries; trying again next round", len(pks) - published)
    return published


def deliveries_schedule_now(*, deliveries: Sequence[Delivery], lease_id: uuid.UUID) -> None:
    """Make deliveries held under `lease_id` pending and due now, release them and publish them, for
    the workers to send (queue mode). Updates them in memory too."""
    now = timezone.now()
    mark = dispatch_mark(now)
    pks = [d.pk for d in deliveries]
    Delivery.objects.filter(pk__in=pks, lease_id=lease_id).update(
        status=Delivery.Status.PENDING,
        next_attempt_at=now,
        lease_id=None,
        lease_expires_at=None,
        dispatched_at=mark,
        updated_at=now,
    )
    for delivery in deliveries:
        delivery.status, delivery.next_attempt_at = Delivery.Status.PENDING, now
    deliveries_publish(delivery_pks=pks, mark=mark)
