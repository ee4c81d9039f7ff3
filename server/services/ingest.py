"""The ingest: one accepted event in, one delivery per destination of the account out."""

import contextlib
import json
import uuid
from dataclasses import dataclass
from functools import partial
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import BooleanField, ExpressionWrapper, Q
from django.utils import timezone

from accounts.models import Account
from datapusher.logs import current_request_id
from datapusher.sql import objects_insert
from server.models import Delivery, Event
from server.payload import payload_parse
from server.selectors import IngestTarget, ingest_target_get
from server.services.breaker import CIRCUIT_OPEN, held_settle
from server.services.delivery import (
    bulkhead,
    deliveries_send,
    deliveries_settle_paused,
    lease_duration,
    send_blocked,
)
from server.services.dispatch import deliveries_hand_over, queue_mode

# What the admin's "Send a test event" ingests for an account (docs/admin.md).
TEST_EVENT = {"data_pusher_test": True, "message": "A test event sent from the Data Pusher admin."}


class AccountBusy(Exception):
    """The account already has its share of ingests waiting on destinations in this process."""


class EventIdConflict(Exception):
    """The account already used this CL-X-EVENT-ID for an event with a different body."""


@dataclass(frozen=True)
class IngestOutcome:
    event: Event
    deliveries: list[Delivery]
    duplicate: bool
    queued: bool = False


def _event_store(
    *, target: IngestTarget, text: str, external_id: str | None, lease_id: uuid.UUID | None
) -> tuple[Event, list[Delivery]]:
    """One transaction of two statements: the event and a pending delivery per destination, leased
    to `lease_id` if given; with none, handed to the broker once committed. The event keeps the
    current request id, for the lines of its deliveries' later attempts."""
    now = timezone.now()
    lease_expires_at = None if lease_id is None else now + lease_duration()
    # Queue mode: the ingest is done once stored and handed over; sync mode: once sent (written then).
    processed_at = now if lease_id is None else None
    event = Event(
        account_id=target.account_id,
        external_id=external_id,
        body=text,
        received_at=now,
        processed_at=processed_at,
        request_id=current_request_id() or "",
    )
    deliveries = []
    for d in target.destinations:
        # A destination that may not be sent to now gets its delivery kept as send_blocked says
        # (paused, or pending for later), never leased.
        held = send_blocked(destination=d, now=now)
        deliveries.append(
            Delivery(
                event=event,
                destination=d,
                url=d.url,
                http_method=d.http_method,
                created_at=now,
                updated_at=now,
                next_attempt_at=now if held is None else held.until,
                lease_id=None if held else lease_id,
                lease_expires_at=None if held else lease_expires_at,
                status=Delivery.Status.PENDING if held is None else held.status,
                error="" if held is None else held.reason,
            )
        )
    with transaction.atomic():
        objects_insert(objs=[event])
        objects_insert(objs=deliveries)
        if lease_id is None:
            to_send = [d.pk for d in deliveries if d.next_attempt_at == now]
            transaction.on_commit(partial(deliveries_hand_over, delivery_pks=to_send))
    return event, deliveries


def event_ingest(
    *, target: IngestTarget, body: bytes, text: str, data: dict[str, Any] | None, external_id: str | None
) -> IngestOutcome:
    """Store the event and one pending delivery per destination, then deliver them.

    `body` is the request's body, `text` the same decoded and `data` parsed (payload_parse), or
    None when no destination was sent the event's keys (it is parsed again if one now is).
    Sync mode: the deliveries are stored already leased to this request, and their first attempts
    run now, at once; their outcomes are written in one more transaction. Queue mode: they are
    handed to the broker once the transaction commits (bounded; the dispatcher publishes what could
    not be). With an `external_id` already used by this account nothing is stored or sent: the
    first event's outcome is returned with `duplicate=True` when the body is the same, byte for byte
    (a unique constraint decides, so two concurrent requests cannot both deliver), and
    EventIdConflict is raised when it differs. A destination deleted while the event is stored is
    left out (the event is stored again without it).

    Raises AccountBusy, storing nothing, when a sync-mode ingest would have to wait for the account's
    share of this process (DATAPUSHER_ACCOUNT_CONCURRENCY ingests already waiting on destinations):
    the sender is told to come back rather than have its deliveries left pending.
    """
    queued = queue_mode()
    # Sync mode: this thread holds one of the account's places from the first statement to the
    # last outcome; the account's ingests beyond its share are refused before anything is stored.
    with contextlib.nullcontext(True) if queued else bulkhead.hold(target.account_id) as admitted:
        if not admitted:
            raise AccountBusy
        return _event_ingest(
            target=target, body=body, text=text, data=data, external_id=external_id, queued=queued
        )


def _event_ingest(
    *,
    target: IngestTarget,
    body: bytes,
    text: str,
    data: dict[str, Any] | None,
    external_id: str | None,
    queued: bool,
) -> IngestOutcome:
    lease_id = None if queued else uuid.uuid4()
    for last_try in (False, True):
        try:
            event, deliveries = _event_store(
                target=target, text=text, external_id=external_id, lease_id=lease_id
            )
            break
        except IntegrityError:
            if external_id is not None:
                first = _event_with_id(account_id=target.account_id, external_id=external_id, text=text)
                if first is not None:
                    if not first.same_body:
                        raise EventIdConflict from None
                    return IngestOutcome(event=first, deliveries=list(first.deliveries.all()), duplicate=True)
            # A destination was deleted meanwhile: store the event for those that are left.
            target = ingest_target_get(account_id=target.account_id)
            if last_try or target is None:
                raise
    paused = [d for d in deliveries if d.status == Delivery.Status.PAUSED]
    held = [d for d in deliveries if d.error.startswith(CIRCUIT_OPEN)]  # by its circuit, as stored
    if not queued:
        deliveries_send(
            deliveries=[d for d in deliveries if d.lease_id is not None],
            lease_id=lease_id,
            payloads={event.event_id: (body, data)},
            processed=event,
        )
    deliveries_settle_paused(deliveries=paused)
    held_settle(deliveries=held)
    return IngestOutcome(event=event, deliveries=deliveries, duplicate=False, queued=queued)


def _event_with_id(*, account_id: uuid.UUID, external_id: str, text: str) -> Event | None:
    """The account's event with this CL-X-EVENT-ID, if any, without its body: the database compares
    the stored body with `text` (`same_body`). The body is stored as the request's bytes decoded
    from UTF-8, so equal text is an equal body, byte for byte."""
    return (
        Event.objects.filter(account_id=account_id, external_id=external_id)
        .defer("body")
        .annotate(same_body=ExpressionWrapper(Q(body=text), output_field=BooleanField()))
        .first()
    )


def event_send_test(*, account: Account) -> IngestOutcome:
    """Ingest TEST_EVENT for the account as if its sender had posted it (no CL-X-EVENT-ID, not
    counted against its rate limit): stored and delivered to each destination like any event.
    Raises Account.DoesNotExist if the account was deleted, AccountBusy as event_ingest does."""
    target = ingest_target_get(account_id=account.pk)
    if target is None:
        raise Account.DoesNotExist
    body = json.dumps(TEST_EVENT).encode()
    text, data = payload_parse(body=body, content_type="application/json", charset=None)
    return event_ingest(target=target, body=body, text=text, data=data, external_id=None)
