"""Recovering a range: sending once more the deliveries of an account (or of one of its
destinations) whose events were received in a time range, in the statuses asked for, oldest first,
through the usual sending paths (so the destination's state and the process's limits apply)."""

from collections import Counter
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.db.models import F, QuerySet, Value
from django.db.models.functions import Greatest
from django.utils import timezone

from accounts.models import Account
from destinations.models import Destination
from server import broker
from server.models import Delivery, Recovery, unleased
from server.selectors import recovery_deliveries
from server.services.dispatch import deliveries_hand_over
from server.services.log import SKIPPED_BUSY, SKIPPED_DESTINATION_DELETED, deliveries_resend

# Sync mode sends at most DATAPUSHER_ADMIN_ACTION_MAX_DELIVERIES from its request; the rest stay as they were.
SKIPPED_OVER_LIMIT = "not started: more than the action's DATAPUSHER_ADMIN_ACTION_MAX_DELIVERIES"


@transaction.atomic
def _recover_queued(*, recovery: Recovery, matching: QuerySet[Delivery]) -> Counter[str]:
    """Make the matching deliveries nobody is sending pending, due as created (so the dispatcher
    publishes them oldest first, in its batches), and theirs the recovery's. Their attempt_count is
    raised to the retry schedule's length: the attempt is their last, a failure ends them failed
    instead of starting the schedule again. Returns what was skipped, by reason."""
    now = timezone.now()
    matching.filter(unleased(now=now), destination__isnull=False).update(
        recovery=recovery,
        status=Delivery.Status.PENDING,
        error="",
        next_attempt_at=F("created_at"),
        attempt_count=Greatest("attempt_count", Value(len(settings.DATAPUSHER_RETRY_SCHEDULE))),
        lease_id=None,
        lease_expires_at=None,
        dispatched_at=None,
        updated_at=now,
    )
    return Counter(
        {
            SKIPPED_DESTINATION_DELETED: matching.filter(destination__isnull=True).count(),
            SKIPPED_BUSY: matching.exclude(unleased(now=now)).count(),
        }
    )


def _recover_now(*, recovery: Recovery, matching: QuerySet[Delivery]) -> Counter[str]:
    """Send the matching deliveries from here with the admin's resend, oldest first, as many as
    its bounds allow (DATAPUSHER_ADMIN_ACTION_MAX_DELIVERIES, DATAPUSHER_ADMIN_ACTION_SECONDS); the
    rest stay as they were. Returns what was skipped, by reason."""
    limit = settings.DATAPUSHER_ADMIN_ACTION_MAX_DELIVERIES
    batch = list(matching.values_list("pk", flat=True)[: limit + 1])
    skipped: Counter[str] = Counter()
    if len(batch) > limit:
        skipped[SKIPPED_OVER_LIMIT] = matching.count() - limit
        batch = batch[:limit]
    resend = deliveries_resend(deliveries=Delivery.objects.filter(pk__in=batch))
    Delivery.objects.filter(pk__in=[d.pk for d in resend.taken]).update(recovery=recovery)
    return skipped + resend.skipped


def recovery_start(
    *,
    account: Account,
    destination: Destination | None,
    since: datetime,
    until: datetime,
    statuses: list[str],
) -> Recovery:
    """Send once more the deliveries that recovery_deliveries matches, oldest first, each with its
    webhook-id. With a broker they are handed to the workers (the first DATAPUSHER_DISPATCH_BATCH
    now, the dispatcher the rest); without one they are sent before this returns, within the
    admin's bounds. One being sent right now or whose destination was deleted is skipped, as is
    what did not fit in sync mode. Returns the recovery (its progress: recovery_progress_get)."""
    recovery = Recovery.objects.create(
        account=account,
        destination=destination,
        since=since,
        until=until,
        statuses=statuses,
        count=0,
        queued=broker.configured(),
    )
    matching = recovery_deliveries(
        account=account, destination=destination, since=since, until=until, statuses=statuses
    )
    recover = _recover_queued if recovery.queued else _recover_now
    skipped = +recover(recovery=recovery, matching=matching)  # + drops the reasons counted 0
    recovery.skipped = dict(skipped)
    recovery.count = recovery.deliveries.count() + skipped.total()
    recovery.finished_at = None if recovery.queued else timezone.now()
    recovery.save(update_fields=["skipped", "count", "finished_at"])
    if recovery.queued:
        due = recovery.deliveries.filter(status=Delivery.Status.PENDING).order_by("pk")
        deliveries_hand_over(
            delivery_pks=list(due.values_list("pk", flat=True)[: settings.DATAPUSHER_DISPATCH_BATCH])
        )
    return recovery
