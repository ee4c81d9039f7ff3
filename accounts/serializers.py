from rest_framework import serializers
from rest_framework.validators import UniqueValidator

from accounts.models import Account
from accounts.services import EMAIL_TAKEN
from datapusher.serializers import HttpUrlField


class AccountSerializer(serializers.ModelSerializer):
    email = serializers.EmailField(
        max_length=254,
        validators=[UniqueValidator(Account.objects.all(), lookup="iexact", message=EMAIL_TAKEN)],
    )
    website = HttpUrlField(max_length=2048, required=False, allow_blank=True)

    class Meta:
        model = Account
        fields = [
            "account_id",
            "email",
            "account_name",
            "app_secret_token",
            "website",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["account_id", "app_secret_token", "created_at", "updated_at"]
