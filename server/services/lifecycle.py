"""A destination's lifecycle as it touches its deliveries: resuming it with its paused backlog, and
deleting it with what was still to be sent to it. (Disabling is destinations.services.)"""

from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from destinations.models import Destination
from server import broker
from server.models import Delivery, unleased
from server.services.breaker import circuits_close
from server.services.dispatch import deliveries_hand_over
from server.services.log import deliveries_resend

# What a deleted destination's unsent deliveries say.
DESTINATION_DELETED = "destination deleted"


@dataclass(frozen=True)
class Resumed:
    """What destination_resume did: how many paused deliveries, or held back by an open circuit, it made
    pending and due again, how many of the backlog were sent in the request (sync mode) and succeeded, and how
    many are left pending (for the workers in queue mode; for the next resume in sync mode)."""

    resumed: int
    sent: int
    succeeded: int
    pending: int
    queued: bool


def destination_resume(*, destination: Destination, by: AbstractBaseUser | None = None) -> Resumed:
    """Enable the destination (clearing disabled_reason) and close its circuit, then make its paused
    deliveries, and those the circuit held back, pending and due in the order they were created. With a broker
    they are handed to the workers, oldest first; without one the backlog (also what an earlier resume left
    pending) is sent from here, oldest first, within the bounds of the admin's resend
    (DATAPUSHER_ADMIN_ACTION_SECONDS), the rest left pending. Returns the counts."""
    now = timezone.now()
    # Enabled before the backlog is read: a delivery paused meanwhile is settled by its pauser
    # (server.services.delivery.deliveries_settle_paused), which then reads the destination enabled.
    Destination.objects.filter(pk=destination.pk).update(
        enabled=True, disabled_reason="", updated_at=now, updated_by=by
    )
    held = circuits_close(destination_ids=[destination.pk])
    destination.refresh_from_db()
    backlog = Delivery.objects.filter(destination=destination)
    resumed = held + backlog.filter(status=Delivery.Status.PAUSED).update(
        status=Delivery.Status.PENDING, error="", next_attempt_at=F("created_at"), updated_at=now
    )
    waiting = backlog.filter(unleased(now=now), status=Delivery.Status.PENDING).order_by("pk")
    queued = broker.configured()
    if queued:
        # The first batch now; the dispatcher publishes the rest, due in the same order.
        due = waiting.filter(next_attempt_at__lte=now)  # a retry put off for later stays put off
        deliveries_hand_over(
            delivery_pks=list(due.values_list("pk", flat=True)[: settings.DATAPUSHER_DISPATCH_BATCH])
        )
        return Resumed(resumed=resumed, sent=0, succeeded=0, pending=waiting.count(), queued=True)
    resend = deliveries_resend(deliveries=waiting)
    succeeded = sum(d.status == Delivery.Status.SUCCEEDED for d in resend.taken)
    pending = backlog.filter(status=Delivery.Status.PENDING).count()
    return Resumed(
        resumed=resumed, sent=len(resend.taken), succeeded=succeeded, pending=pending, queued=False
    )


@transaction.atomic
def destination_delete(*, destination: Destination) -> int:
    """Delete the destination; its deliveries not yet sent (pending or paused, nobody sending them)
    fail for good with DESTINATION_DELETED and stay in the log. Returns how many."""
    now = timezone.now()
    dropped = Delivery.objects.filter(
        unleased(now=now),
        destination=destination,
        status__in=[Delivery.Status.PENDING, Delivery.Status.PAUSED],
    ).update(status=Delivery.Status.FAILED, error=DESTINATION_DELETED, next_attempt_at=None, updated_at=now)
    destination.delete()
    return dropped
