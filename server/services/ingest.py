"""The ingest: one accepted event in, one delivery per destination of the account out."""

import uuid
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import Account
from server.models import Delivery, Event
from server.services.delivery import deliveries_send, lease_duration
from server.services.dispatch import deliveries_publish, dispatch_mark


@dataclass(frozen=True)
class IngestOutcome:
    event: Event
    deliveries: list[Delivery]
    duplicate: bool
    queued: bool = False


def queue_mode() -> bool:
    return settings.DATAPUSHER_DELIVERY_MODE == "queue"


def event_ingest(
    *, account: Account, body: bytes, data: dict[str, Any], external_id: str | None
) -> IngestOutcome:
    """Store the event and one pending delivery per destination, then deliver them.

    Sync mode: the deliveries are stored already leased to this request, and their first attempts
    run now, at once. Queue mode: they are published to the broker once the transaction commits
    (bounded; the dispatcher publishes what could not be). With an `external_id` already used by
    this account nothing is stored or sent: the first event's outcome is returned with
    `duplicate=True` (a unique constraint decides, so two concurrent requests cannot both deliver).
    """
    queued = queue_mode()
    destinations = list(account.destinations.all())
    now = timezone.now()
    lease_id = None if queued else uuid.uuid4()
    lease = {"lease_id": lease_id, "lease_expires_at": None if queued else now + lease_duration()}
    mark = dispatch_mark(now) if queued else None
    try:
        with transaction.atomic():
            event = Event.objects.create(account=account, external_id=external_id, body=body.decode())
            deliveries = Delivery.objects.bulk_create(
                Delivery(
                    event=event,
                    destination=d,
                    url=d.url,
                    http_method=d.http_method,
                    next_attempt_at=now,
                    dispatched_at=mark,
                    **lease,
                )
                for d in destinations
            )
            if queued:
                pks = [d.pk for d in deliveries]
                transaction.on_commit(lambda: deliveries_publish(delivery_pks=pks, mark=mark))
    except IntegrityError:
        if external_id is None:
            raise
        first = Event.objects.get(account=account, external_id=external_id)
        return IngestOutcome(event=first, deliveries=list(first.deliveries.all()), duplicate=True)
    if not queued:
        deliveries_send(deliveries=deliveries, lease_id=lease_id, payloads={event.event_id: (body, data)})
    event.processed_at = timezone.now()
    event.save(update_fields=["processed_at"])
    return IngestOutcome(event=event, deliveries=deliveries, duplicate=False, queued=queued)
