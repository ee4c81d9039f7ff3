import functools
import uuid
from collections.abc import Callable

from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accounts.selectors import account_administered_list, user_sees_everything
from datapusher.serializers import HttpUrlField
from destinations.addresses import url_without_credentials
from destinations.models import Destination
from destinations.validators import validate_destination_address, validate_headers

# What a header value reads as for those who may not see it (it may hold a credential).
MASKED = "********"


def credentials_visible_to(user) -> Callable[[uuid.UUID], bool]:
    """Whether `user` may read what may hold credentials in an account's destinations (header
    values, a URL's user:password@ and query string): its admins (and staff) may; the accounts it
    administers are read once, when first asked."""
    if user_sees_everything(user=user):
        return lambda _account_id: True
    administered = functools.cache(
        lambda: set(account_administered_list(user=user).values_list("account_id", flat=True))
    )
    return lambda account_id: account_id in administered()


class HttpMethodField(serializers.ChoiceField):
    """A method in any case (`post`, `Post`), stored upper case."""

    def to_internal_value(self, data):
        return super().to_internal_value(data.upper() if isinstance(data, str) else data)


@extend_schema_field(
    {
        "type": "object",
        "additionalProperties": {"type": "string"},
        "example": {"Authorization": "Bearer your-api-key", "X-Source": "datapusher"},
    }
)
class HeadersField(serializers.JSONField):
    """Header name to string value (a JSON object), sent with every delivery."""


class AdministeredAccountField(serializers.PrimaryKeyRelatedField):
    """An account_id among the accounts the requesting user administers: any other, existing or
    not, is the same 400 (does not exist)."""

    def get_queryset(self):
        return account_administered_list(user=self.context["request"].user)


class DestinationSerializer(serializers.ModelSerializer):
    account = AdministeredAccountField(
        pk_field=serializers.UUIDField(),
        help_text="The owning account's account_id: one you are an admin of.",
    )
    url = HttpUrlField(max_length=2048, validators=[validate_destination_address])
    http_method = HttpMethodField(choices=Destination.HttpMethod.choices)
    headers = HeadersField(
        default=dict,
        validators=[validate_headers],
        help_text="Header name to string value, sent with every delivery; none ({}) when left out.",
    )

    class Meta:
        model = Destination
        fields = [
            "id",
            "account",
            "url",
            "http_method",
            "headers",
            "enabled",
            "disabled_reason",
            "signing_secret",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "disabled_reason", "signing_secret", "created_at", "updated_at"]
        extra_kwargs = {
            "enabled": {
                "help_text": "false: nothing is sent to it; its new deliveries are kept as `paused` until "
                "POST /api/destinations/{id}/resume/ sends them."
            },
            "disabled_reason": {
                "help_text": "Why the system turned it off (its receiver answered 410 Gone, or "
                "`webhook-delivery: disable`); empty otherwise, and cleared when it is resumed or enabled."
            },
            "signing_secret": {
                "required": False,
                "help_text": "Only in the answers that make it (create, rotate-secret); account admins read "
                "it again at /api/destinations/{id}/secret/.",
            },
        }

    def to_representation(self, instance):
        data = super().to_representation(instance)
        if not self.context.get("show_secret"):
            del data["signing_secret"]
        credentials_visible = self.context.get("credentials_visible")
        if credentials_visible is not None and not credentials_visible(instance.account_id):
            data["headers"] = {name: MASKED for name in data["headers"]}
            data["url"] = url_without_credentials(data["url"])
        return data


class DestinationResumeSerializer(serializers.Serializer):
    resumed = serializers.IntegerField(help_text="Paused deliveries made pending again.")
    sent = serializers.IntegerField(help_text="Deliveries of the backlog sent before answering (sync mode).")
    succeeded = serializers.IntegerField(help_text="Of those sent, how many succeeded.")
    pending = serializers.IntegerField(
        help_text="Left pending: for the workers (queue mode), or for the next resume (sync mode)."
    )
    queued = serializers.BooleanField(help_text="Whether the backlog was handed to the workers.")


class DestinationDeletedSerializer(serializers.Serializer):
    deleted_pending = serializers.IntegerField(
        help_text="Its deliveries not sent yet (pending or paused), failed for good with it."
    )


class DestinationSecretSerializer(serializers.ModelSerializer):
    previous_signing_secret = serializers.SerializerMethodField(
        help_text="The secret before the last rotation while deliveries are still signed with it, else null."
    )

    class Meta:
        model = Destination
        fields = ["signing_secret", "previous_signing_secret", "previous_secret_expires_at"]

    def get_previous_signing_secret(self, destination) -> str | None:
        secrets = destination.signing_secrets(now=timezone.now())
        return secrets[1] if len(secrets) > 1 else None

    def to_representation(self, instance):
        data = super().to_representation(instance)
        if data["previous_signing_secret"] is None:
            data["previous_secret_expires_at"] = None
        return data
