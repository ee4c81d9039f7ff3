"""Celery tasks. They carry a delivery's primary key only: the database is the source of truth."""

from celery import shared_task

from server.services.delivery import delivery_attempt_due


@shared_task(acks_late=True, reject_on_worker_lost=True)
def deliver(delivery_pk: int) -> None:
    """Attempt one delivery if it is due and nobody holds it. A retryable failure is not retried
    here: the delivery stays pending with its next_attempt_at, and the dispatcher publishes it then."""
    delivery_attempt_due(delivery_pk=delivery_pk)
