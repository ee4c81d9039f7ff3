"""The dispatcher: which pending deliveries it publishes, marking them, and two dispatchers at once.

Publishing is recorded (the `published` fixture); a real broker and worker are in
test_queue_integration.py.
"""

import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from server.models import Delivery
from server.services.dispatch import deliveries_dispatch
from server.tests.helpers import at_once, pending_delivery

pytestmark = pytest.mark.django_db
SOMEONE = "6f1c2a7e-0000-4000-8000-000000000001"


@pytest.fixture
def broker(settings, published):
    settings.CELERY_BROKER_URL = "redis://broker.invalid:6379/0"
    return published


def ago(seconds: float):
    return timezone.now() - timedelta(seconds=seconds)


def test_publishes_each_due_delivery_once_and_marks_it(broker):
    """A due pending delivery nobody holds is published and marked; the next round leaves it alone."""
    delivery = pending_delivery(next_attempt_at=ago(1))
    assert deliveries_dispatch(limit=10) == 1
    assert broker == [delivery.pk]
    delivery.refresh_from_db()
    assert delivery.dispatched_at is not None
    assert deliveries_dispatch(limit=10) == 0
    assert broker == [delivery.pk]


@pytest.mark.parametrize(
    "fields",
    [
        {"next_attempt_at": timezone.now() + timedelta(minutes=5)},
        {"lease_id": SOMEONE, "lease_expires_at": timezone.now() + timedelta(seconds=30)},
        {"status": "succeeded", "next_attempt_at": None},
        {"status": "failed", "next_attempt_at": None},
    ],
    ids=["not-due", "being-sent", "succeeded", "failed"],
)
def test_leaves_deliveries_that_are_not_due_free_and_pending(broker, fields):
    """Not yet due, held by a sender, or finished: not published."""
    pending_delivery(**fields)
    assert deliveries_dispatch(limit=10) == 0
    assert broker == []


def test_publishes_a_delivery_whose_senders_lease_ran_out_and_clears_the_lease(broker):
    """A sender that died mid-delivery (a killed worker) left an expired lease: published again,
    and the dead sender's lease cleared so its late outcome, if any, cannot overwrite."""
    delivery = pending_delivery(next_attempt_at=ago(60), lease_id=SOMEONE, lease_expires_at=ago(1))
    assert deliveries_dispatch(limit=10) == 1
    delivery.refresh_from_db()
    assert (delivery.lease_id, delivery.lease_expires_at) == (None, None)


def test_hands_over_again_what_the_broker_lost_once_its_queue_is_empty(broker, monkeypatch):
    """Handed over 6 s ago and not taken while the broker's queue is empty: lost (a flushed
    broker), so published again. Handed over 1 s ago: left alone."""
    lost = pending_delivery(next_attempt_at=ago(60), dispatched_at=ago(6))
    pending_delivery(next_attempt_at=ago(60), dispatched_at=ago(1))
    assert deliveries_dispatch(limit=10) == 1
    assert broker == [lost.pk]


def test_waits_for_a_busy_queue_until_the_redispatch_timeout(broker, monkeypatch, settings):
    """While the broker still holds messages, a delivery handed over and not taken is a backlog,
    not a loss: published again only after DATAPUSHER_REDISPATCH_AFTER."""
    settings.DATAPUSHER_REDISPATCH_AFTER = 300
    monkeypatch.setattr("server.broker.queue_depth", lambda: 40)
    waiting = pending_delivery(next_attempt_at=ago(400), dispatched_at=ago(60))
    overdue = pending_delivery(next_attempt_at=ago(400), dispatched_at=ago(301))
    assert deliveries_dispatch(limit=10) == 1
    assert broker == [overdue.pk]
    waiting.refresh_from_db()
    assert waiting.dispatched_at < ago(59)


def test_a_broker_that_does_not_take_them_leaves_them_unmarked(broker, monkeypatch):
    """Publishing failed: nothing counts as handed over, so the next round tries again."""
    monkeypatch.setattr("server.broker.publish", lambda *, delivery_pks: False)
    delivery = pending_delivery(next_attempt_at=ago(1))
    assert deliveries_dispatch(limit=10) == 0
    delivery.refresh_from_db()
    assert delivery.dispatched_at is None


def test_publishes_oldest_due_first_in_bounded_batches(broker):
    """limit=2 of three due deliveries: the two due longest, then the third next round."""
    newest = pending_delivery(next_attempt_at=ago(1))
    oldest = pending_delivery(next_attempt_at=ago(30))
    middle = pending_delivery(next_attempt_at=ago(10))
    assert deliveries_dispatch(limit=2) == 2
    assert broker == [oldest.pk, middle.pk]
    assert deliveries_dispatch(limit=2) == 1
    assert broker[-1] == newest.pk


def test_dispatch_command_once(broker):
    """`manage.py dispatch --once` makes one pass and says how many it published."""
    pending_delivery(next_attempt_at=ago(1))
    out = io.StringIO()
    call_command("dispatch", "--once", stdout=out)
    assert out.getvalue() == "Published 1 deliveries.\n"


@pytest.mark.django_db(transaction=True)
def test_two_dispatchers_at_once_publish_each_delivery_once(broker):
    """Two dispatchers started at the same instant on 300 due deliveries: each delivery is published
    exactly once between them (FOR UPDATE SKIP LOCKED, then marked)."""
    if connection.vendor != "postgresql":
        pytest.skip("needs row locks and concurrent writers: runs on PostgreSQL (CI runs it)")
    first = pending_delivery(next_attempt_at=ago(5))
    Delivery.objects.bulk_create(
        Delivery(
            event=first.event,
            destination=first.destination,
            url=first.url,
            http_method="POST",
            next_attempt_at=ago(5),
        )
        for _ in range(299)
    )
    counts = at_once(lambda: deliveries_dispatch(limit=500))
    assert sum(counts) == 300
    assert sorted(broker) == sorted(Delivery.objects.values_list("pk", flat=True))
