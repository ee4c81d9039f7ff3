from django.db import models

from accounts.models import Account, Authored
from datapusher.validators import http_url_validator
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
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.http_method} {self.url}"
