"""The hot path's hand-built statements (datapusher/sql.py), on SQLite and on PostgreSQL."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from datapusher.sql import rows_insert, rows_update
from server.models import Attempt, Delivery
from server.services.delivery import ATTEMPT_FIELDS
from server.tests.helpers import pending_delivery

pytestmark = pytest.mark.django_db


def test_rows_past_the_parameter_limit_go_in_batches_and_come_back_in_order(monkeypatch):
    """With room for one row per statement, 5 rows are 5 INSERTs; their ids come back in the order
    the rows were given, each row stored as given."""
    delivery = pending_delivery()
    now = timezone.now()
    # A property on SQLite, a cached property on PostgreSQL: replaced on the class, its cache dropped.
    monkeypatch.setattr(type(connection.features), "max_query_params", 2 * len(ATTEMPT_FIELDS) - 1)
    monkeypatch.delitem(vars(connection.features), "max_query_params", raising=False)
    rows = [(delivery.pk, delivery.destination_id, 200 + n, f"body {n}", "", n, now, now) for n in range(5)]
    with CaptureQueriesContext(connection) as captured:
        ids = rows_insert(model=Attempt, fields=ATTEMPT_FIELDS, rows=rows, returning="id")
    assert [query["sql"].split()[0] for query in captured.captured_queries] == ["INSERT"] * 5
    assert ids == sorted(ids)
    stored = Attempt.objects.filter(pk__in=ids).order_by("pk")
    assert [(a.status_code, a.response_body, a.duration_ms) for a in stored] == [
        (200 + n, f"body {n}", n) for n in range(5)
    ]


def test_an_update_writes_only_rows_meeting_its_condition_and_types_nulls_before_values():
    """One UPDATE … FROM (VALUES …) whose first row is NULL where the second has a timestamp (the
    case PostgreSQL needs typed): the row whose lease matches is changed and returned, the other
    left alone."""
    mine, other = pending_delivery(), pending_delivery()
    Delivery.objects.filter(pk=mine.pk).update(lease_id="11111111-1111-1111-1111-111111111111")
    later = timezone.now() + timedelta(minutes=5)
    changed = rows_update(
        model=Delivery,
        key="id",
        fields=["status", "next_attempt_at"],
        rows=[(mine.pk, "failed", None), (other.pk, "pending", later)],
        where=f"{connection.ops.quote_name('lease_id')} IS NOT NULL",
    )
    assert changed == {mine.pk}
    mine.refresh_from_db()
    other_before = other.next_attempt_at
    other.refresh_from_db()
    assert (mine.status, mine.next_attempt_at) == ("failed", None)
    assert (other.status, other.next_attempt_at) == ("pending", other_before)
