"""Attempts logged before attempts recorded their destination get it from their delivery."""

import importlib

import pytest
from django.apps import apps
from django.db import connection

from server.models import Attempt
from server.tests.factories import AttemptFactory, DeliveryFactory

pytestmark = pytest.mark.django_db

migration = importlib.import_module("server.migrations.0007_attempt_destination")


def test_old_attempts_get_their_deliverys_destination():
    """Each attempt without a destination gets its delivery's; one whose destination was deleted stays
    without."""
    kept, orphaned = DeliveryFactory(), DeliveryFactory()
    AttemptFactory.create_batch(2, delivery=kept, destination=None)
    AttemptFactory(delivery=orphaned, destination=None)
    orphaned.destination.delete()
    migration.attempts_fill_destination(apps, connection.schema_editor())  # data only: not entered
    assert sorted(Attempt.objects.values_list("delivery_id", "destination_id")) == sorted(
        [(kept.pk, kept.destination_id), (kept.pk, kept.destination_id), (orphaned.pk, None)]
    )
