"""Celery tasks. They carry a delivery's primary key only: the database is the source of truth."""

from celery import shared_task
from django.conf import settings

from server.services import deliveries_sweep, delivery_attempt_due


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=None)
def deliver(self, delivery_pk: int) -> None:
    """Attempt one delivery if due; a retryable failure comes back on the retry schedule."""
    retry_in = delivery_attempt_due(delivery_pk=delivery_pk)
    if retry_in is not None:
        raise self.retry(countdown=retry_in)


@shared_task
def sweep() -> int:
    """Enqueue pending deliveries that are well overdue (a flushed broker, a killed worker)."""
    return deliveries_sweep(overdue_seconds=settings.DATAPUSHER_SWEEP_OVERDUE_SECONDS)
