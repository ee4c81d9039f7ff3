import functools
import urllib.parse
import uuid
from collections.abc import Callable

from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accounts.selectors import account_administered_list, user_sees_everything
from datapusher.serializers import HttpUrlField
from destinations.addresses import url_without_credentials
from destinations.auth import OPTIONAL_FIELDS, REQUIRED_FIELDS, SECRET_FIELD, AuthType
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


class DestinationAuthSerializer(serializers.Serializer):
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

    def to_internal_value(self, data):
        unknown = sorted(set(data) - set(self.fields)) if isinstance(data, dict) else []
        if unknown:
            raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)

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

    class Meta:
        model = Destination
        fields = [
            "id",
            "account",
            "url",
            "http_method",
            "headers",
            "auth",
            "signing_secret",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "signing_secret", "created_at", "updated_at"]
        extra_kwargs = {
            "signing_secret": {
                "required": False,
                "help_text": "Only in the answers that make it (create, rotate-secret); account admins read "
                "it again at /api/destinations/{id}/secret/.",
            }
        }

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
