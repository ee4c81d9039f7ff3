"""The ingest: one accepted event in, one delivery per destination of the account out."""

import contextlib
import uuid
from dataclasses import dataclass
from functools import partial
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import Account
from destinations.models import Destination
from server.models import Delivery, Event
from server.services.delivery import bulkhead, deliveries_send, lease_duration
from server.services.dispatch import deliveries_hand_over, queue_mode


class AccountBusy(Exception):
    """The account already has its share of ingests waiting on destinations in this process."""


@dataclass(frozen=True)
class IngestOutcome:
    event: Event
    deliveries: list[Delivery]
    duplicate: bool
    queued: bool = False


def _event_store(
    *,
    account: Account,
    destinations: list[Destination],
    body: bytes,
    external_id: str | None,
    lease_id: uuid.UUID | None,
) -> tuple[Event, list[Delivery]]:
    """One transaction: the event and a pending delivery per destination, leased to `lease_id` if
    given; with none, handed to the broker once committed."""
    now = timezone.now()
    lease_expires_at = None if lease_id is None else now + lease_duration()
    with transaction.atomic():
        event = Event.objects.create(account=account, external_id=external_id, body=body.decode())
        deliveries = Delivery.objects.bulk_create(
            Delivery(
                event=event,
                destination=d,
                url=d.url,
                http_method=d.http_method,
                next_attempt_at=now,
                lease_id=lease_id,
                lease_expires_at=lease_expires_at,
            )
            for d in destinations
        )
        if lease_id is None:
            transaction.on_commit(partial(deliveries_hand_over, delivery_pks=[d.pk for d in deliveries]))
    return event, deliveries


def event_ingest(
    *, account: Account, body: bytes, data: dict[str, Any], external_id: str | None
) -> IngestOutcome:
    """Store the event and one pending delivery per destination, then deliver them.

    Sync mode: the deliveries are stored already leased to this request, and their first attempts
    run now, at once. Queue mode: they are handed to the broker once the transaction commits
    (bounded; the dispatcher publishes what could not be). With an `external_id` already used by
    this account nothing is stored or sent: the first event's outcome is returned with
    `duplicate=True` (a unique constraint decides, so two concurrent requests cannot both deliver).
    A destination deleted while the event is stored is left out (the event is stored again without it).

    Raises AccountBusy, storing nothing, when a sync-mode ingest would have to wait for the account's
    share of this process (DATAPUSHER_ACCOUNT_CONCURRENCY ingests already waiting on destinations):
    the sender is told to come back rather than have its deliveries left pending.
    """
    queued = queue_mode()
    # Sync mode: this thread holds one of the account's places from the first statement to the
    # last outcome; the account's ingests beyond its share are refused before anything is stored.
    with contextlib.nullcontext(True) if queued else bulkhead.hold(account.account_id) as admitted:
        if not admitted:
            raise AccountBusy
        return _event_ingest(account=account, body=body, data=data, external_id=external_id, queued=queued)


def _event_ingest(
    *, account: Account, body: bytes, data: dict[str, Any], external_id: str | None, queued: bool
) -> IngestOutcome:
    lease_id = None if queued else uuid.uuid4()
    for last_try in (False, True):
        try:
            event, deliveries = _event_store(
                account=account,
                destinations=list(account.destinations.all()),
                body=body,
                external_id=external_id,
                lease_id=lease_id,
            )
            break
        except IntegrityError:
            if external_id is not None:
                first = Event.objects.filter(account=account, external_id=external_id).first()
                if first is not None:
                    return IngestOutcome(event=first, deliveries=list(first.deliveries.all()), duplicate=True)
            if last_try:
                raise
    if not queued:
        deliveries_send(deliveries=deliveries, lease_id=lease_id, payloads={event.event_id: (body, data)})
    event.processed_at = timezone.now()
    event.save(update_fields=["processed_at"])
    return IngestOutcome(event=event, deliveries=deliveries, duplicate=False, queued=queued)
