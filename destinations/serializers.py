import functools
import re
import urllib.parse
import uuid
from collections.abc import Callable
from datetime import timedelta

from django.db import models
from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accounts.selectors import account_administered_list, user_sees_everything
from datapusher.serializers import HttpUrlField, KnownFieldsOnly
from destinations.addresses import url_without_credentials
from destinations.auth import OPTIONAL_FIELDS, REQUIRED_FIELDS, SECRET_FIELD, AuthType
from destinations.models import CircuitState, Destination
from destinations.selectors import destination_circuit
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


class NumberField(serializers.FloatField):
    """A JSON number or numeric string; true and false are not numbers."""

    def to_internal_value(self, data):
        if isinstance(data, bool):
            self.fail("invalid")
        return super().to_internal_value(data)


class AdministeredAccountField(serializers.PrimaryKeyRelatedField):
    """An account_id among the accounts the requesting user administers: any other, existing or
    not, is the same 400 (does not exist)."""

    def get_queryset(self):
        return account_administered_list(user=self.context["request"].user)


def validate_no_userinfo(url: str) -> None:
    """The client id and secret authenticate to a token URL: none in it (they would replace them)."""
    if "@" in urllib.parse.urlsplit(url).netloc:
        raise serializers.ValidationError(
            "A token URL without user:password@ (client_id and client_secret authenticate)."
        )


def _secret_field(**kwargs) -> serializers.CharField:
    return serializers.CharField(
        write_only=True, required=False, trim_whitespace=False, max_length=4096, **kwargs
    )


class DestinationAuthSerializer(KnownFieldsOnly, serializers.Serializer):
    """How deliveries authenticate: the type, and the fields it needs (and no others). The password,
    token and client secret are write-only: sent again whenever `auth` is."""

    type = serializers.ChoiceField(choices=AuthType.choices)
    username = serializers.RegexField(
        r"^[^:\x00-\x1f\x7f]+\Z",
        required=False,
        max_length=200,
        help_text="basic: the user name (no colon).",
        error_messages={"invalid": "A user name without a colon or control characters."},
    )
    password = _secret_field(help_text="basic: the password; write-only.")
    token = serializers.RegexField(
        r"^[A-Za-z0-9\-._~+/]+=*\Z",  # RFC 6750 b64token (RegexField searches: anchored)
        write_only=True,
        required=False,
        max_length=4096,
        help_text="bearer: the token; write-only.",
        error_messages={"invalid": "A bearer token: letters, digits and -._~+/ then any = (RFC 6750)."},
    )
    token_url = HttpUrlField(
        required=False,
        max_length=2048,
        validators=[validate_destination_address, validate_no_userinfo],
        help_text="oauth2_client_credentials: the token endpoint (the same SSRF guard as `url`).",
    )
    client_id = serializers.CharField(
        required=False, trim_whitespace=False, max_length=1000, help_text="oauth2_client_credentials."
    )
    client_secret = _secret_field(help_text="oauth2_client_credentials: write-only.")
    scope = serializers.RegexField(
        r"^[!#-\[\]-~]+( [!#-\[\]-~]+)*\Z",  # RFC 6749 scope
        required=False,
        max_length=1000,
        help_text="oauth2_client_credentials, optional: space-separated scopes.",
        error_messages={"invalid": 'Space-separated scopes of visible characters but " and \\ (RFC 6749).'},
    )

    def validate(self, attrs):
        auth_type = AuthType(attrs["type"])
        secret = SECRET_FIELD.get(auth_type)
        required = [*REQUIRED_FIELDS[auth_type], *([secret] if secret else [])]
        allowed = {"type", *required, *OPTIONAL_FIELDS.get(auth_type, ())}
        errors = {name: ["This field is required."] for name in required if name not in attrs}
        errors |= {name: [f"Not used with type {auth_type}."] for name in attrs if name not in allowed}
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


class CircuitSerializer(serializers.Serializer):
    state = serializers.ChoiceField(choices=CircuitState.choices)
    consecutive_failures = serializers.IntegerField(
        help_text="Retryable failures in a row (timeouts, connection errors, 5xx, 429 without "
        "Retry-After) since the last success; DATAPUSHER_BREAKER_FAILURES of them open the circuit."
    )
    next_probe_at = serializers.DateTimeField(
        allow_null=True,
        help_text="Open: when one held delivery is sent as a probe. Half-open: when the probe under "
        "way counts as lost. Null when closed.",
    )


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
    auth = DestinationAuthSerializer(
        required=False,
        help_text="How deliveries authenticate; type none when left out on create, unchanged when left "
        "out on update. Answers show the type and its user name, token URL, client id and scope "
        "(members: the type only), never a password, token or client secret.",
    )
    circuit = serializers.SerializerMethodField(
        help_text="The circuit breaker: open after repeated retryable failures, when deliveries are "
        "held back (pending, no attempt spent) until a probe succeeds."
    )

    # The model's float fields (rate_limit), with their range: numbers only.
    serializer_field_mapping = {
        **serializers.ModelSerializer.serializer_field_mapping,
        models.FloatField: NumberField,
    }

    class Meta:
        model = Destination
        fields = [
            "id",
            "account",
            "url",
            "http_method",
            "headers",
            "auth",
            "enabled",
            "rate_limit",
            "max_in_flight",
            "disabled_reason",
            "circuit",
            "signing_secret",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "disabled_reason", "signing_secret", "created_at", "updated_at"]
        extra_kwargs = {
            "rate_limit": {
                "default": None,
                "help_text": "At most this many requests a second (0.001 to 10000; 0.5 is one every 2 s); "
                "more wait, pending, and none fails for it. Applied by the workers: to every attempt in "
                "queue mode, only to background retries in sync mode. null: no limit (also when left out, "
                "on PUT too).",
            },
            "max_in_flight": {
                "default": None,
                "help_text": "At most this many requests at once (1 to 10000); more wait, pending, and none "
                "fails for it. Applied as rate_limit is. null: no limit (also when left out, on PUT too).",
            },
            "enabled": {
                "help_text": "false: nothing is sent to it; its new deliveries are kept as `paused` until "
                "POST /api/destinations/{id}/resume/ sends them."
            },
            "disabled_reason": {
                "help_text": "Why the system turned it off (its receiver answered 410 Gone, or "
                "`webhook-delivery: disable`, or its circuit stayed open for DATAPUSHER_DISABLE_AFTER); "
                "empty otherwise, and cleared when it is resumed or enabled."
            },
            "signing_secret": {
                "required": False,
                "help_text": "Only in the answers that make it (create, rotate-secret); account admins read "
                "it again at /api/destinations/{id}/secret/.",
            },
        }

    @extend_schema_field(CircuitSerializer)
    def get_circuit(self, destination: Destination) -> dict:
        return CircuitSerializer(destination_circuit(destination=destination)).data

    def to_representation(self, instance):
        data = super().to_representation(instance)
        if not self.context.get("show_secret"):
            del data["signing_secret"]
        credentials_visible = self.context.get("credentials_visible")
        if credentials_visible is not None and not credentials_visible(instance.account_id):
            data["headers"] = {name: MASKED for name in data["headers"]}
            data["auth"] = {"type": data["auth"]["type"]}
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


# ?window= of a destination's stats: a whole number of minutes, hours or days, up to STATS_WINDOW_MAX.
STATS_WINDOW_UNITS = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1)}
STATS_WINDOW_MAX = timedelta(days=30)
STATS_WINDOW_DEFAULT = "24h"
STATS_WINDOW_ERROR = "Enter a whole number of minutes, hours or days such as 30m, 24h or 7d, at most 30d."
_STATS_WINDOW = re.compile(r"([1-9][0-9]{0,5})([mhd])")


class StatsQuerySerializer(serializers.Serializer):
    window = serializers.CharField(
        default=STATS_WINDOW_DEFAULT,
        help_text="How far back from now: a whole number of minutes, hours or days (`30m`, `24h`, "
        "`7d`), at most 30 days. Default 24h.",
    )

    def validate(self, attrs: dict) -> dict:
        """Adds `length`, the window's timedelta."""
        found = _STATS_WINDOW.fullmatch(attrs["window"])
        length = found and int(found[1]) * STATS_WINDOW_UNITS[found[2]]
        if not length or length > STATS_WINDOW_MAX:
            raise serializers.ValidationError({"window": [STATS_WINDOW_ERROR]})
        return {**attrs, "length": length}


class DestinationStatsSerializer(serializers.Serializer):
    """A destination's attempts (server/selectors.py: DestinationStats) in the window ending now,
    with the context's `window` as asked and `circuit` (destinations/selectors.py: Circuit)."""

    window = serializers.SerializerMethodField()
    attempts = serializers.IntegerField()
    succeeded = serializers.IntegerField(help_text="Attempts answered 2xx.")
    failed = serializers.IntegerField(help_text="Attempts answered otherwise, or not at all.")
    success_rate = serializers.FloatField(
        allow_null=True, help_text="succeeded / attempts, 0 to 1; null without attempts."
    )
    p50_ms = serializers.IntegerField(allow_null=True, help_text="Median duration (nearest rank).")
    p95_ms = serializers.IntegerField(allow_null=True, help_text="95th percentile duration (nearest rank).")
    last_success_at = serializers.DateTimeField(allow_null=True, help_text="The window's last success began.")
    last_failure_at = serializers.DateTimeField(allow_null=True, help_text="The window's last failure began.")
    circuit = serializers.SerializerMethodField()

    def get_window(self, _stats) -> str:
        return self.context["window"]

    @extend_schema_field(CircuitSerializer)
    def get_circuit(self, _stats) -> dict:
        return CircuitSerializer(self.context["circuit"]).data
