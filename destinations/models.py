from datetime import datetime

from django.db import models

from accounts.models import Account, Authored
from datapusher.validators import http_url_validator
from destinations.addresses import url_without_credentials
from destinations.signing import generate_signing_secret
from destinations.validators import validate_destination_address, validate_headers


class Destination(Authored):
    """A URL that receives an account's incoming data, with the method and headers to use."""

    class HttpMethod(models.TextChoices):
        GET = "GET"
        POST = "POST"
        PUT = "PUT"
        PATCH = "PATCH"
        DELETE = "DELETE"

    account = models.ForeignKey(Account, on_delete=models.DB_CASCADE, related_name="destinations")
    url = models.URLField(max_length=2048, validators=[http_url_validator, validate_destination_address])
    http_method = models.CharField(max_length=6, choices=HttpMethod.choices)
    headers = models.JSONField(default=dict, blank=True, validators=[validate_headers])
    # Standard Webhooks secret: receivers verify `webhook-signature` with it.
    signing_secret = models.CharField(max_length=100, default=generate_signing_secret, editable=False)
    # The secret before the last rotation: deliveries are signed with it too until it expires, so
    # that receivers can switch over without dropping any.
    previous_signing_secret = models.CharField(max_length=100, blank=True, default="", editable=False)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # Failed attempts since the last successful one (server/services/alerts.py), changed only by
    # relative or conditional UPDATEs so that concurrent senders count right.
    consecutive_failures = models.PositiveIntegerField(default=0, editable=False)
    # A disabled destination is sent nothing: its new deliveries are kept as `paused` until it is
    # resumed (destinations/services.py). disabled_reason says why, when the system turned it off.
    enabled = models.BooleanField(default=True)
    disabled_reason = models.CharField(max_length=500, blank=True, default="", editable=False)

    class Meta:
        ordering = ["id"]
        indexes = [
            # ?enabled=false and the admin's filter: the few disabled ones among many.
            models.Index(fields=["account"], condition=models.Q(enabled=False), name="destination_disabled"),
        ]

    def __str__(self) -> str:
        # Shown in the admin's lists and pickers: no credential the URL may hold.
        return f"{self.http_method} {url_without_credentials(self.url)}"

    def signing_secrets(self, *, now: datetime) -> list[str]:
        """The secrets deliveries are signed with at `now`: the current one, then the previous one
        while its overlap lasts."""
        if (
            self.previous_signing_secret
            and self.previous_secret_expires_at
            and self.previous_secret_expires_at > now
        ):
            return [self.signing_secret, self.previous_signing_secret]
        return [self.signing_secret]
