"""The delivery log's write side: sending deliveries again by hand, and retention."""

import uuid
from datetime import datetime

from django.db.models import QuerySet

from server.models import Delivery, Event
from server.services.delivery import deliveries_claim, deliveries_send, event_payloads
from server.services.dispatch import deliveries_schedule_now, queue_mode


class DestinationDeleted(Exception):
    """The delivery's destination no longer exists, so it cannot be sent again."""


class DeliveryBusy(Exception):
    """Someone is sending the delivery right now (it is leased); its outcome is not known yet."""


def deliveries_redeliver(*, deliveries: QuerySet[Delivery]) -> list[Delivery]:
    """Send the given deliveries again, with their webhook-ids, to their destinations as configured
    now. Each is claimed first: one being sent right now is skipped, as is one whose destination
    was deleted. Queue mode: they become pending and due now, for the workers; sync mode: they are
    sent before this returns, within the usual deadline and limits. Returns those taken, by id."""
    lease_id = uuid.uuid4()
    claimed = deliveries_claim(deliveries=deliveries.filter(destination__isnull=False), lease_id=lease_id)
    if queue_mode():
        deliveries_schedule_now(deliveries=claimed, lease_id=lease_id)
    else:
        deliveries_send(
            deliveries=claimed, lease_id=lease_id, payloads=event_payloads(events={d.event for d in claimed})
        )
    return sorted(claimed, key=lambda d: d.pk)


def event_redeliver(*, event: Event, include_succeeded: bool = False) -> list[Delivery]:
    """Send the event's deliveries that have not succeeded again — failed ones, and pending ones
    nobody is sending (such as those a crash left behind); all of them with `include_succeeded`."""
    deliveries = event.deliveries.all()
    if not include_succeeded:
        deliveries = deliveries.exclude(status=Delivery.Status.SUCCEEDED)
    return deliveries_redeliver(deliveries=deliveries)


def delivery_retry(*, delivery: Delivery) -> Delivery:
    """Send one delivery again. Raises DestinationDeleted when its destination is gone, and
    DeliveryBusy when someone is sending it right now."""
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
