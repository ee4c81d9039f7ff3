from datetime import datetime

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from accounts.models import Account, Authored
from datapusher.validators import http_url_validator
from destinations.addresses import url_without_credentials
from destinations.auth import SECRET_FIELD, AuthType, auth_none, secret_decrypt
from destinations.signing import generate_signing_secret
from destinations.validators import validate_destination_address, validate_headers

# A destination's rate_limit, in requests a second: at least one request every 1000 s, at most 10000 a
# second (server/services/limits.py counts every request in its window: a bound on what it keeps).
RATE_LIMIT_MIN = 0.001
RATE_LIMIT_MAX = 10000
MAX_IN_FLIGHT_MAX = 10000


class CircuitState(models.TextChoices):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


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
    # How deliveries authenticate (destinations/auth.py): the type and its readable fields; the
    # type's secret is in auth_secret, encrypted. Both are set only through the services.
    auth = models.JSONField(default=auth_none, editable=False)
    auth_secret = models.TextField(blank=True, default="", editable=False)
    # The circuit breaker (server/services/breaker.py): closed, or open since circuit_opened_at after
    # enough consecutive failures, its deliveries held back until next_probe_at, when one is sent as
    # a probe (half_open meanwhile). circuit_trips counts the openings since it was last closed.
    circuit_state = models.CharField(
        max_length=9, choices=CircuitState.choices, default=CircuitState.CLOSED, editable=False
    )
    circuit_opened_at = models.DateTimeField(null=True, blank=True, editable=False)
    circuit_trips = models.PositiveSmallIntegerField(default=0, editable=False)
    next_probe_at = models.DateTimeField(null=True, blank=True, editable=False)
    # What the workers send it (queue mode, server/services/limits.py): at most rate_limit requests
    # a second and max_in_flight at once; null: no limit. Deliveries over one wait, pending.
    rate_limit = models.FloatField(
        null=True,
        blank=True,
        validators=[MinValueValidator(RATE_LIMIT_MIN), MaxValueValidator(RATE_LIMIT_MAX)],
    )
    max_in_flight = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(MAX_IN_FLIGHT_MAX)]
    )

    class Meta:
        ordering = ["id"]
        indexes = [
            # The dispatcher's round: circuits due for a probe, a few among many destinations.
            models.Index(
                fields=["next_probe_at"],
                condition=~models.Q(circuit_state="closed"),
                name="destination_circuit_probe",
            ),
            # ?enabled=false and the admin's filter: the few disabled ones among many.
            models.Index(fields=["account"], condition=models.Q(enabled=False), name="destination_disabled"),
        ]

    def __str__(self) -> str:
        # Shown in the admin's lists and pickers: no credential the URL may hold.
        return f"{self.http_method} {url_without_credentials(self.url)}"

    def clean(self) -> None:
        headers = self.headers if isinstance(self.headers, dict) else {}
        if self.auth_type != AuthType.NONE and any(name.lower() == "authorization" for name in headers):
            raise ValidationError(
                {"headers": f"Authorization cannot be set here while auth is {self.auth_type}: auth sets it."}
            )

    @property
    def auth_type(self) -> str:
        return self.auth.get("type", AuthType.NONE)

    @property
    def auth_fetches_token(self) -> bool:
        """Whether its requests carry an OAuth 2.0 access token, fetched from its token URL."""
        return self.auth_type == AuthType.OAUTH2_CLIENT_CREDENTIALS

    def credentials(self) -> dict[str, str]:
        """`auth` with its secret decrypted. Raises CredentialsUnavailable when no key decrypts it."""
        secret_field = SECRET_FIELD.get(self.auth_type)
        if secret_field is None:
            return dict(self.auth)
        return {**self.auth, secret_field: secret_decrypt(self.auth_secret)}

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
