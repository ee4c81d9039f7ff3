from rest_framework import serializers
from rest_framework.validators import UniqueValidator

from accounts.models import Account, AccountMember
from accounts.selectors import user_sees_everything
from accounts.services import EMAIL_TAKEN
from datapusher.serializers import HttpUrlField

STAFF_SETS_RATE_LIMIT = "Only staff can change an account's rate limit."


class AccountSerializer(serializers.ModelSerializer):
    email = serializers.EmailField(
        max_length=254,
        validators=[UniqueValidator(Account.objects.all(), lookup="iexact", message=EMAIL_TAKEN)],
    )
    website = HttpUrlField(max_length=2048, required=False, allow_blank=True)
    app_secret_token = serializers.CharField(
        read_only=True,
        required=False,
        help_text="The CL-X-TOKEN. Only in the answers that make it (create, rotate-token): it is kept "
        "hashed and never shown again.",
    )
    app_secret_token_prefix = serializers.CharField(
        read_only=True, help_text="The token's first 8 characters, to recognise it by."
    )

    class Meta:
        model = Account
        fields = [
            "account_id",
            "email",
            "account_name",
            "app_secret_token",
            "app_secret_token_prefix",
            "website",
            "rate_limit",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["account_id", "created_at", "updated_at"]
        extra_kwargs = {
            "rate_limit": {
                "help_text": 'Ingests accepted for this account, e.g. "10/minute" or "5/second"; null: the '
                "service's default (DATAPUSHER_INGEST_RATE_LIMIT). Set by staff only."
            }
        }

    def validate_rate_limit(self, value):
        current = self.instance.rate_limit if self.instance is not None else None
        if value != current and not user_sees_everything(user=self.context["request"].user):
            raise serializers.ValidationError(STAFF_SETS_RATE_LIMIT)
        return value

    def to_representation(self, instance):
        data = super().to_representation(instance)
        if instance.app_secret_token is None:
            del data["app_secret_token"]
        return data


class SignInSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=254, help_text="The username or the email address.")
    password = serializers.CharField(max_length=4096, trim_whitespace=False, style={"input_type": "password"})


class SignedInSerializer(serializers.Serializer):
    token = serializers.CharField(help_text="Send it as `Authorization: Token <token>`.")
    expiry = serializers.DateTimeField(allow_null=True, help_text="When it stops working.")


class MemberSerializer(serializers.ModelSerializer):
    user_id = serializers.IntegerField(read_only=True)
    email = serializers.EmailField(source="user.email", read_only=True)

    class Meta:
        model = AccountMember
        fields = ["user_id", "email", "role", "created_at"]
        read_only_fields = ["created_at"]


class MemberCreateSerializer(serializers.Serializer):
    email = serializers.EmailField(max_length=150)
    role = serializers.ChoiceField(choices=AccountMember.Role.choices)


class MemberCreatedSerializer(MemberSerializer):
    password = serializers.CharField(
        required=False, help_text="Only when this created the user: its one-time password, shown once."
    )

    class Meta(MemberSerializer.Meta):
        fields = [*MemberSerializer.Meta.fields, "password"]


class MembershipSerializer(serializers.ModelSerializer):
    account_id = serializers.UUIDField(read_only=True)
    account_name = serializers.CharField(source="account.account_name", read_only=True)

    class Meta:
        model = AccountMember
        fields = ["account_id", "account_name", "role"]


class MeSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()
    email = serializers.EmailField()
    is_staff = serializers.BooleanField(help_text="Staff see and manage every account.")
    memberships = MembershipSerializer(many=True)
