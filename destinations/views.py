from django.utils import timezone
from django_filters import rest_framework as filters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from accounts.selectors import account_list
from datapusher.filters import ListFiltersMixin
from destinations.models import Destination
from destinations.selectors import destination_circuit, destination_list
from destinations.serializers import (
    DestinationSecretSerializer,
    DestinationSerializer,
    DestinationStatsSerializer,
    StatsQuerySerializer,
    credentials_visible_to,
)
from destinations.services import (
    destination_create,
    destination_delete,
    destination_rotate_secret,
    destination_update,
)
from server.selectors import destination_stats_get


class DestinationFilter(filters.FilterSet):
    account = filters.UUIDFilter(field_name="account_id", help_text="Only this account's destinations.")
    http_method = filters.ChoiceFilter(choices=Destination.HttpMethod.choices)
    enabled = filters.BooleanFilter(help_text="Only the enabled (true) or the disabled (false) ones.")

    class Meta:
        model = Destination
        fields = ["account", "http_method", "enabled"]


class DestinationViewSet(ListFiltersMixin, viewsets.ModelViewSet):
    """Destinations of the accounts the user is a member of; created, changed and deleted by the
    account's admins (only for, or to, accounts they administer)."""

    serializer_class = DestinationSerializer
    filterset_class = DestinationFilter
    search_fields = ["url"]
    ordering_fields = ["id", "created_at"]

    admin_actions = ("secret",)

    def get_queryset(self):
        return destination_list(user=self.request.user)

    def get_serializer_context(self):
        # The signing secret is in the answers that make it, and nowhere else but `secret`.
        return {
            **super().get_serializer_context(),
            "show_secret": self.action in ("create", "rotate_secret"),
            "credentials_visible": credentials_visible_to(self.request.user),
        }

    def perform_create(self, serializer):
        serializer.instance = destination_create(**serializer.validated_data, by=self.request.user)

    def perform_update(self, serializer):
        serializer.instance = destination_update(
            destination=serializer.instance, data=serializer.validated_data, by=self.request.user
        )

    def perform_destroy(self, instance):
        destination_delete(destination=instance)

    @extend_schema(request=None, responses=DestinationSerializer)
    @action(detail=True, methods=["post"], url_path="rotate-secret")
    def rotate_secret(self, request, pk=None):
        """Replace the destination's signing secret; the answer carries the new one."""
        destination = destination_rotate_secret(destination=self.get_object(), by=request.user)
        return Response(self.get_serializer(destination).data)

    @extend_schema(request=None, responses=DestinationSecretSerializer)
    @action(detail=True, methods=["get"])
    def secret(self, request, pk=None):
        """The destination's signing secret (and the previous one while it still signs); for admins."""
        return Response(DestinationSecretSerializer(self.get_object()).data)

    @extend_schema(parameters=[StatsQuerySerializer], responses=DestinationStatsSerializer)
    @action(detail=True, methods=["get"])
    def stats(self, request, pk=None):
        """The destination's attempts in the window ending now (counts, success rate, duration
        percentiles, last success and failure) and its circuit; for any member."""
        destination = self.get_object()
        query = StatsQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        window, now = query.validated_data, timezone.now()
        stats = destination_stats_get(destination=destination, since=now - window["length"], now=now)
        context = {"window": window["window"], "circuit": destination_circuit(destination=destination)}
        return Response(DestinationStatsSerializer(stats, context=context).data)


@extend_schema(parameters=[OpenApiParameter("account_id", OpenApiTypes.UUID, OpenApiParameter.PATH)])
class AccountDestinationList(generics.ListAPIView):
    """The destinations of one account (404 for an account the user is not a member of)."""

    queryset = Destination.objects.none()  # the real one depends on the URL; this one names the model
    serializer_class = DestinationSerializer

    def get_serializer_context(self):
        return {
            **super().get_serializer_context(),
            "credentials_visible": credentials_visible_to(self.request.user),
        }

    def get_queryset(self):
        account = generics.get_object_or_404(
            account_list(user=self.request.user), account_id=self.kwargs["account_id"]
        )
        return account.destinations.all()
