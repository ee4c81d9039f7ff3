from django.conf import settings
from django_filters import rest_framework as filters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from knox.views import LoginView as KnoxLoginView
from knox.views import LogoutView as KnoxLogoutView
from rest_framework import exceptions, mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.generics import get_object_or_404
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.throttling import BaseThrottle
from rest_framework.views import APIView

from accounts.models import Account, AccountMember
from accounts.selectors import account_list, member_list, membership_list
from accounts.serializers import (
    AccountSerializer,
    MemberCreatedSerializer,
    MemberCreateSerializer,
    MemberSerializer,
    MeSerializer,
    SignedInSerializer,
    SignInSerializer,
)
from accounts.services import (
    account_create,
    account_delete,
    account_rotate_token,
    account_update,
    member_add,
    member_remove,
    member_update,
    user_authenticate,
)
from datapusher.filters import ListFiltersMixin, UtcDateTimeFilter
from datapusher.ratelimit import limit_wait
from datapusher.schema import DETAIL, FIELD_ERRORS

SIGN_IN_FAILED = "Unable to sign in with these credentials."


class AccountFilter(filters.FilterSet):
    created_after = UtcDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = UtcDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Account
        fields: list[str] = []


class AccountViewSet(ListFiltersMixin, viewsets.ModelViewSet):
    """Accounts the user is a member of (every account for staff); any signed-in user may create
    one and becomes its admin."""

    serializer_class = AccountSerializer
    lookup_field = "account_id"
    filterset_class = AccountFilter
    search_fields = ["account_name", "email"]
    ordering_fields = ["account_name", "email", "created_at"]

    def get_queryset(self):
        return account_list(user=self.request.user)

    def perform_create(self, serializer):
        serializer.instance = account_create(**serializer.validated_data, by=self.request.user)

    def perform_update(self, serializer):
        serializer.instance = account_update(
            account=serializer.instance, data=serializer.validated_data, by=self.request.user
        )

    def perform_destroy(self, instance):
        account_delete(account=instance)

    @extend_schema(request=None, responses=AccountSerializer)
    @action(detail=True, methods=["post"], url_path="rotate-token")
    def rotate_token(self, request, account_id=None):
        """Replace the account's app secret token; the old one stops working at once."""
        account = account_rotate_token(account=self.get_object(), by=request.user)
        return Response(self.get_serializer(account).data)


@extend_schema(parameters=[OpenApiParameter("account_id", OpenApiTypes.UUID, OpenApiParameter.PATH)])
class MemberViewSet(
    mixins.ListModelMixin, mixins.UpdateModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet
):
    """An account's members: any member reads them, its admins add, change and remove them."""

    serializer_class = MemberSerializer
    lookup_field = "user_id"
    pagination_class = None
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def account(self) -> Account:
        """The account in the URL, if the user is a member (404 otherwise); writes need its admin."""
        if not hasattr(self, "_account"):
            self._account = get_object_or_404(
                account_list(user=self.request.user), account_id=self.kwargs["account_id"]
            )
            self.check_object_permissions(self.request, self._account)
        return self._account

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return AccountMember.objects.none()
        return member_list(account=self.account())

    @extend_schema(request=MemberCreateSerializer, responses={201: MemberCreatedSerializer})
    def create(self, request, account_id=None):
        """Add a member by email; a user with that email is created if there is none, and this answer
        alone carries its one-time password."""
        serializer = MemberCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        member, password = member_add(account=self.account(), **serializer.validated_data, by=request.user)
        data = MemberSerializer(member).data
        if password is not None:
            data["password"] = password
        return Response(data, status=status.HTTP_201_CREATED)

    def perform_update(self, serializer):
        serializer.instance = member_update(
            member=serializer.instance,
            role=serializer.validated_data.get("role", serializer.instance.role),
            by=self.request.user,
        )

    def perform_destroy(self, instance):
        member_remove(member=instance)


class SignInView(KnoxLoginView):
    """Sign in with a username (or email) and password; answers an API token that expires.

    Failed sign-ins are counted per username and per client address; past either limit the
    endpoint answers 429 with Retry-After, whatever the password."""

    authentication_classes = []
    permission_classes = [AllowAny]

    @extend_schema(
        request=SignInSerializer,
        responses={
            200: SignedInSerializer,
            400: OpenApiResponse(FIELD_ERRORS, description="Wrong credentials (which part is not said)."),
            429: OpenApiResponse(DETAIL, description="Too many failed sign-ins; see Retry-After."),
        },
    )
    def post(self, request, format=None):
        serializer = SignInSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        username, password = serializer.validated_data["username"], serializer.validated_data["password"]
        counters = [
            ("sign-in:username", username.lower(), settings.DATAPUSHER_SIGN_IN_FAILURES_PER_USERNAME),
            (
                "sign-in:address",
                BaseThrottle().get_ident(request),
                settings.DATAPUSHER_SIGN_IN_FAILURES_PER_ADDRESS,
            ),
        ]
        waits = [limit_wait(group=g, key=k, rate=r, count=False) for g, k, r in counters]
        if any(waits):
            raise exceptions.Throttled(wait=max(wait for wait in waits if wait))
        user = user_authenticate(request=request, username=username, password=password)
        if user is None:
            for group, key, rate in counters:
                limit_wait(group=group, key=key, rate=rate, count=True)
            raise exceptions.ValidationError({"non_field_errors": [SIGN_IN_FAILED]})
        request.user = user
        return super().post(request, format=format)


class SignOutView(KnoxLogoutView):
    """Revoke the token this request is signed with."""

    @extend_schema(request=None, responses={204: None})
    def post(self, request, format=None):
        return super().post(request, format=format)


class MeView(APIView):
    """The signed-in user and their memberships."""

    permission_classes = [IsAuthenticated]

    @extend_schema(responses=MeSerializer)
    def get(self, request):
        user = request.user
        data = {
            "id": user.pk,
            "username": user.get_username(),
            "email": user.email,
            "is_staff": user.is_staff or user.is_superuser,
            "memberships": membership_list(user=user),
        }
        return Response(MeSerializer(data).data)
