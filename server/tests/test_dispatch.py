"""The dispatcher: which pending deliveries it publishes, marking them, and two dispatchers at once.

Publishing is recorded (the `published` fixture); a real broker and worker are in
test_queue_integration.py.
"""

import io
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
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
        # Times taken when the tests are collected, minutes before this one may run: a day ahead.
        {"next_attempt_at": timezone.now() + timedelta(days=1)},
        {"lease_id": SOMEONE, "lease_expires_at": timezone.now() + timedelta(days=1)},
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


def test_hands_over_again_what_the_broker_lost(broker, monkeypatch):
    """Three deliveries handed over 6 s ago and not taken, and only one message in the broker's
    queue: some were lost (a flushed broker), so all three are published again. One handed over
    1 s ago is left alone (a worker may be about to take it)."""
    monkeypatch.setattr("server.broker.queue_depth", lambda: 1)
    lost = [pending_delivery(next_attempt_at=ago(60), dispatched_at=ago(6)) for _ in range(3)]
    pending_delivery(next_attempt_at=ago(60), dispatched_at=ago(1))
    assert deliveries_dispatch(limit=10) == 3
    assert sorted(broker) == sorted(d.pk for d in lost)


@pytest.mark.parametrize("depth", [3, 40, None], ids=["as-many", "backlog", "broker-unreachable"])
def test_never_tops_up_a_queue_that_may_still_hold_them(broker, monkeypatch, depth):
    """As many messages queued as deliveries waiting (or more: a backlog), or a queue that cannot be
    read: they may all still be there, so nothing is handed over again, however long they wait."""
    monkeypatch.setattr("server.broker.queue_depth", lambda: depth)
    waiting = [pending_delivery(next_attempt_at=ago(3600), dispatched_at=ago(3000)) for _ in range(3)]
    assert deliveries_dispatch(limit=10) == 0
    assert [Delivery.objects.get(pk=d.pk).dispatched_at for d in waiting] == [
        d.dispatched_at for d in waiting
    ]


def test_a_broker_that_does_not_take_them_leaves_them_unmarked(broker, monkeypatch):
    """Publishing failed: nothing counts as handed over, so the next round tries again."""
    monkeypatch.setattr("server.broker.publish", lambda *, delivery_pks: 0)
    delivery = pending_delivery(next_attempt_at=ago(1))
    assert deliveries_dispatch(limit=10) == 0
    delivery.refresh_from_db()
    assert delivery.dispatched_at is None


def test_what_the_broker_took_before_failing_stays_marked(broker, monkeypatch):
    """The broker took the first of two and then stopped answering: the first keeps its mark, the
    second loses it and goes next round."""
    monkeypatch.setattr("server.broker.publish", lambda *, delivery_pks: 1)
    first = pending_delivery(next_attempt_at=ago(2))
    second = pending_delivery(next_attempt_at=ago(1))
    assert deliveries_dispatch(limit=10) == 1
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.dispatched_at is not None, second.dispatched_at) == (True, None)


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


def test_dispatch_command_needs_a_broker(settings):
    """Without CELERY_BROKER_URL there is nothing to dispatch to: a clear error, not a busy loop."""
    settings.CELERY_BROKER_URL = ""
    with pytest.raises(CommandError) as excinfo:
        call_command("dispatch", "--once")
    assert str(excinfo.value) == "The dispatcher publishes to a broker: set CELERY_BROKER_URL."


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
