import uuid
from datetime import datetime

from django.db import models
from django.db.models import Q
from django.utils import timezone

from accounts.models import Account
from destinations.addresses import url_without_credentials
from destinations.models import Destination


class Event(models.Model):
    """One accepted ingest: the data an upstream system sent for an account."""

    event_id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account = models.ForeignKey(Account, on_delete=models.DB_CASCADE, related_name="events")
    # CL-X-EVENT-ID: the sender's idempotency key, unique per account when given.
    external_id = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001 (NULL: no key given)
    body = models.TextField(help_text="The JSON body exactly as received (UTF-8).")
    received_at = models.DateTimeField(default=timezone.now)
    processed_at = models.DateTimeField(null=True, blank=True)
    # The X-Request-ID of the ingest (given or generated): every log line about the event's
    # deliveries carries it, in workers too. Empty for events stored outside a request.
    request_id = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        ordering = ["-received_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["account", "external_id"],
                condition=Q(external_id__isnull=False),
                name="event_external_id_unique_per_account",
            ),
        ]
        indexes = [
            models.Index(fields=["account", "-received_at"], name="event_account_received"),
            models.Index(fields=["received_at"], name="event_received"),
            # ?external_id= without an account (staff): the unique constraint leads with the account.
            models.Index(
                fields=["external_id"], condition=Q(external_id__isnull=False), name="event_external_id"
            ),
        ]

    def __str__(self) -> str:
        return str(self.event_id)


class Recovery(models.Model):
    """A "recover a range": the deliveries of an account (or of one of its destinations) whose event
    was received in [since, until) and whose status was one of `statuses`, each sent once more. The
    deliveries it took point at it (Delivery.recovery); its progress is read from them."""

    recovery_id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account = models.ForeignKey(Account, on_delete=models.DB_CASCADE, related_name="recoveries")
    # None: all the account's destinations (or the destination was deleted since).
    destination = models.ForeignKey(
        Destination, on_delete=models.DB_SET_NULL, null=True, blank=True, related_name="recoveries"
    )
    since = models.DateTimeField()
    until = models.DateTimeField()
    statuses = models.JSONField(help_text="The delivery statuses it took.")
    count = models.PositiveIntegerField(help_text="The deliveries that matched when it started.")
    skipped = models.JSONField(default=dict, help_text="Why matching ones were not taken: reason to count.")
    # Sent by the workers (a broker is configured), or from the request that started it.
    queued = models.BooleanField()
    created_at = models.DateTimeField(default=timezone.now)
    # Set when it ended in its request (sync mode); in queue mode it ends when none of its deliveries
    # is pending any more.
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "recoveries"

    def __str__(self) -> str:
        return str(self.recovery_id)


class Delivery(models.Model):
    """One event sent to one destination, over one or more attempts."""

    class Status(models.TextChoices):
        PENDING = "pending"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        # Kept, not sent: its destination is disabled (the reason in `error`); resuming it sends it.
        PAUSED = "paused"

    # The sequential id orders deliveries as created; delivery_id is the public id and the
    # Standard Webhooks `webhook-id` (the same across retries).
    delivery_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    event = models.ForeignKey(Event, on_delete=models.DB_CASCADE, related_name="deliveries")
    destination = models.ForeignKey(
        Destination, on_delete=models.DB_SET_NULL, null=True, blank=True, related_name="deliveries"
    )
    # Where it was (last) sent, kept when the destination is deleted.
    url = models.URLField(max_length=2048)
    http_method = models.CharField(max_length=6)
    status = models.CharField(max_length=9, choices=Status.choices, default=Status.PENDING)
    attempt_count = models.PositiveIntegerField(default=0)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    # While pending: when the next attempt is due.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # The lease of whoever is sending it now (the ingest, a worker, a manual retry): taken with one
    # conditional UPDATE, and only the holder of lease_id may write the attempt's outcome.
    lease_id = models.UUIDField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    # When it was last handed to the broker and no worker has taken it since (the dispatcher's mark).
    dispatched_at = models.DateTimeField(null=True, blank=True)
    # The last recovery that sent it once more (NULL for nearly all: the partial index skips them).
    recovery = models.ForeignKey(
        Recovery,
        on_delete=models.DB_SET_NULL,
        null=True,
        blank=True,
        related_name="deliveries",
        db_index=False,  # delivery_recovery, partial
    )

    class Meta:
        ordering = ["id"]
        verbose_name_plural = "deliveries"
        indexes = [
            # The dispatcher's scan: pending deliveries by due time, a small part of a large table.
            models.Index(
                fields=["next_attempt_at"], condition=Q(status="pending"), name="delivery_pending_due"
            ),
            models.Index(fields=["status", "created_at"], name="delivery_status_created"),
            models.Index(fields=["created_at"], name="delivery_created"),
            models.Index(fields=["processed_at"], name="delivery_processed"),
            # A resume's backlog: a destination's paused deliveries, oldest first.
            models.Index(fields=["destination", "id"], condition=Q(status="paused"), name="delivery_paused"),
            # A recovery's progress: its deliveries only.
            models.Index(fields=["recovery"], condition=Q(recovery__isnull=False), name="delivery_recovery"),
            # A destination's deliveries in flight (held under a lease), counted against its max_in_flight.
            models.Index(
                fields=["destination", "lease_expires_at"],
                condition=Q(lease_id__isnull=False),
                name="delivery_leased",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.http_method} {url_without_credentials(self.url)} ({self.status})"


def unleased(*, now: datetime) -> Q:
    """Deliveries nobody holds: never leased, released, or whose holder's lease ran out."""
    return Q(lease_id__isnull=True) | Q(lease_expires_at__lt=now)


class Attempt(models.Model):
    """One HTTP try of a delivery."""

    delivery = models.ForeignKey(Delivery, on_delete=models.DB_CASCADE, related_name="attempts")
    # The delivery's destination when it was attempted, kept here so that a destination's attempts
    # in a time window are one range of the index below (a destination's stats) rather than a join
    # through all its deliveries ever.
    destination = models.ForeignKey(
        Destination,
        on_delete=models.DB_SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,  # attempt_destination_started leads with it
    )
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.TextField(blank=True, default="", help_text="The first 4 KiB of the answer.")
    error = models.TextField(blank=True, default="")
    duration_ms = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField()

    class Meta:
        ordering = ["id"]
        indexes = [
            # The dashboard's day of attempts (server/selectors.py: dashboard_get).
            models.Index(fields=["started_at"], name="attempt_started"),
            # One destination's attempts in a window (server/selectors.py: destination_stats_get).
            models.Index(fields=["destination", "started_at"], name="attempt_destination_started"),
        ]

    def __str__(self) -> str:
        return f"{self.status_code or self.error} in {self.duration_ms} ms"


class DispatcherHeartbeat(models.Model):
    """One row per running dispatcher (`manage.py dispatch`), rewritten after each round it completes:
    /readyz reports the dispatcher stale when the newest beat is too old."""

    name = models.CharField(max_length=255, unique=True, help_text="host:pid of the dispatcher process.")
    beat_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name} at {self.beat_at}"
