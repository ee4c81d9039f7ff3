from drf_spectacular.utils import extend_schema
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from accounts.models import Account
from accounts.serializers import AccountSerializer
from accounts.services import account_create, account_delete, account_rotate_token, account_update


class AccountViewSet(viewsets.ModelViewSet):
    queryset = Account.objects.all()
    serializer_class = AccountSerializer
    lookup_field = "account_id"

    def perform_create(self, serializer):
        serializer.instance = account_create(**serializer.validated_data)

    def perform_update(self, serializer):
        serializer.instance = account_update(account=serializer.instance, data=serializer.validated_data)

    def perform_destroy(self, instance):
        account_delete(account=instance)

    @extend_schema(request=None, responses=AccountSerializer)
    @action(detail=True, methods=["post"], url_path="rotate-token")
    def rotate_token(self, request, account_id=None):
        """Replace the account's app secret token; the old one stops working at once."""
        account = account_rotate_token(account=self.get_object())
        return Response(self.get_serializer(account).data)
