import uuid

from django.conf import settings
from django.db import models
from django.db.models.functions import Lower

from accounts.tokens import (
    APP_SECRET_TOKEN_PREFIX_LENGTH,
    app_secret_token_hash,
    generate_app_secret_token,
    unknown_app_secret_token_hash,
)
from datapusher.validators import validate_rate


class Authored(models.Model):
    """Who created the row and who last changed it (NULL once that user is deleted, or when the
    change came from a command or the ingest rather than a person)."""

    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.DB_SET_NULL, related_name="+"
    )
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.DB_SET_NULL, related_name="+"
    )

    class Meta:
        abstract = True


class Account(Authored):
    """A customer whose incoming data is pushed to its destinations."""

    account_id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    email = models.EmailField(max_length=254)
    account_name = models.CharField(max_length=255)
    # The app secret token (CL-X-TOKEN) is kept as a hash, and its first characters to recognise it;
    # the token itself is known only to the instance that made it (see new_app_secret_token).
    app_secret_token_hash = models.CharField(
        max_length=64, unique=True, default=unknown_app_secret_token_hash, editable=False
    )
    app_secret_token_prefix = models.CharField(
        max_length=APP_SECRET_TOKEN_PREFIX_LENGTH, blank=True, editable=False
    )
    website = models.URLField(max_length=2048, blank=True, default="")
    # Ingests accepted per second/minute/... for this account; NULL: DATAPUSHER_INGEST_RATE_LIMIT.
    rate_limit = models.CharField(max_length=20, null=True, blank=True, validators=[validate_rate])  # noqa: DJ001
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at", "account_id"]
        indexes = [models.Index(fields=["created_at", "account_id"], name="account_created")]
        constraints = [
            models.UniqueConstraint(
                Lower("email"),
                name="account_email_ci_unique",
                violation_error_message="An account with this email already exists.",
            ),
        ]

    # Set on this instance only, by new_app_secret_token, so that the answer that made it can show it once.
    app_secret_token: str | None = None

    def __str__(self) -> str:
        return f"{self.account_name} <{self.email}>"

    def new_app_secret_token(self) -> str:
        """Give the account a fresh token (not saved yet): sets its hash and prefix, returns it."""
        token = generate_app_secret_token()
        self.app_secret_token = token
        self.app_secret_token_hash = app_secret_token_hash(token)
        self.app_secret_token_prefix = token[:APP_SECRET_TOKEN_PREFIX_LENGTH]
        return token


class AccountMember(Authored):
    """A user's role on an account: `admin` manages it, `member` reads it and may resend."""

    class Role(models.TextChoices):
        ADMIN = "admin"
        MEMBER = "member"

    account = models.ForeignKey(Account, on_delete=models.DB_CASCADE, related_name="members")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.DB_CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=6, choices=Role.choices)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["account", "user"], name="account_member_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.user} ({self.role}) on {self.account}"
