import uuid

from django.db import models
from django.db.models.functions import Lower

from accounts.tokens import generate_app_secret_token


class Account(models.Model):
    """A customer whose incoming data is pushed to its destinations."""

    account_id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    email = models.EmailField(max_length=254)
    account_name = models.CharField(max_length=255)
    app_secret_token = models.CharField(
        max_length=64, unique=True, default=generate_app_secret_token, editable=False
    )
    website = models.URLField(max_length=2048, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at", "account_id"]
        constraints = [
            models.UniqueConstraint(
                Lower("email"),
                name="account_email_ci_unique",
                violation_error_message="An account with this email already exists.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.account_name} <{self.email}>"
