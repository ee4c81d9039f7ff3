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

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from server import broker
from server.models import Delivery

# A delivery handed over this long ago and not taken by a worker, while the broker's queue is
# empty, was lost by the broker (flushed, restarted without persistence): hand it over again.
LOST_AFTER = timedelta(seconds=5)

logger = logging.getLogger(__name__)


def dispatch_mark(now: datetime) -> datetime | None:
    """The dispatched_at to store on deliveries about to be published: None when the broker is
    resting after a failure (the dispatcher will publish them instead)."""
    return now if broker.accepting() else None


def deliveries_publish(*, delivery_pks: Sequence[int], mark: datetime | None) -> bool:
    """Publish deliveries just marked dispatched at `mark`; if the broker does not take them, clear
    the mark so the dispatcher publishes them as soon as the broker answers. True if published."""
    if mark is None or not delivery_pks:
        return False
    if broker.publish(delivery_pks=delivery_pks):
        return True
    Delivery.objects.filter(pk__in=delivery_pks, dispatched_at=mark, lease_id__isnull=True).update(
        dispatched_at=None
    )
    return False


def _handed_over_before(now: datetime) -> datetime:
    """Deliveries handed to the broker before this moment and still not taken are handed over again."""
    redispatch_after = now - timedelta(seconds=settings.DATAPUSHER_REDISPATCH_AFTER)
    waiting = Delivery.objects.filter(
        status=Delivery.Status.PENDING,
        next_attempt_at__lte=now,
        lease_id__isnull=True,
        dispatched_at__lt=now - LOST_AFTER,
    )
    if waiting.exists() and broker.queue_depth() == 0:
        return now - LOST_AFTER  # nothing left in the broker: those messages are gone
    return redispatch_after


def deliveries_dispatch(*, limit: int) -> int:
    """Publish up to `limit` due pending deliveries that no worker has: never handed over, handed
    over but lost by the broker, or abandoned by a sender whose lease ran out (a killed worker).
    Returns how many were published; safe to run in several processes at once."""
    now = timezone.now()
    handed_over_before = _handed_over_before(now)
    abandoned = Q(lease_id__isnull=False, lease_expires_at__lt=now)
    free = Q(lease_id__isnull=True) & (
        Q(dispatched_at__isnull=True) | Q(dispatched_at__lt=handed_over_before)
    )
    with transaction.atomic():
        pks = list(
            Delivery.objects.select_for_update(skip_locked=True)
            .filter(status=Delivery.Status.PENDING, next_attempt_at__lte=now)
            .filter(abandoned | free)
            .order_by("next_attempt_at")
            .values_list("pk", flat=True)[:limit]
        )
        if not pks:
            return 0
        # An abandoned lease is cleared: its holder, if it ever comes back, writes nothing but its attempt.
        Delivery.objects.filter(pk__in=pks).update(
            dispatched_at=now, lease_id=None, lease_expires_at=None, updated_at=now
        )
    if not deliveries_publish(delivery_pks=pks, mark=now):
        logger.warning("could not publish %s due deliveries; trying again next round", len(pks))
        return 0
    return len(pks)


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
