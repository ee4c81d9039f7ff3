import re

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from accounts.selectors import account_get_by_token
from server.filters import DeliveryFilter, EventFilter
from server.models import Delivery, Event
from server.payload import InvalidPayload, payload_parse
from server.serializers import (
    DeliveryDetailSerializer,
    DeliveryResultSerializer,
    DeliverySerializer,
    EventDetailSerializer,
    EventSerializer,
)
from server.services import DestinationDeleted, delivery_retry, event_ingest, event_redeliver

TOKEN_HEADER = "CL-X-TOKEN"  # noqa: S105 (a header name, not a secret)
EVENT_ID_HEADER = "CL-X-EVENT-ID"
EVENT_ID = re.compile(r"[!-~][ -~]{0,254}")  # 1-255 printable ASCII characters


def _failure(status: int, message: str, **extra) -> JsonResponse:
    return JsonResponse({"success": False, "message": message, **extra}, status=status)


@csrf_exempt
def incoming_data(request: HttpRequest) -> JsonResponse:
    """Receive a JSON object for the account owning the CL-X-TOKEN and push it to its destinations.

    Checks in order: method (405), token (401), body and CL-X-EVENT-ID (400 / 413); then 200 with
    one entry per destination (202 with pending entries in queue mode). Authenticated by the token
    alone: no user session, no CSRF.
    """
    if request.method != "POST":
        response = _failure(405, "Invalid Data")
        response["Allow"] = "POST"
        return response
    account = account_get_by_token(token=request.headers.get(TOKEN_HEADER, ""))
    if account is None:
        return _failure(401, "Un Authenticate")
    try:
        body = request.body
        data = payload_parse(
            body=body,
            content_type=request.content_type or "",
            charset=request.content_params.get("charset"),
        )
    except RequestDataTooBig:
        return _failure(413, "Payload Too Large")
    except InvalidPayload:
        return _failure(400, "Invalid Data")
    external_id = request.headers.get(EVENT_ID_HEADER) or None
    if external_id is not None and not EVENT_ID.fullmatch(external_id):
        return _failure(
            400, "Invalid Data", error=f"{EVENT_ID_HEADER} must be 1 to 255 printable ASCII characters."
        )
    outcome = event_ingest(account=account, body=body, data=data, external_id=external_id)
    return JsonResponse(
        {
            "success": True,
            "message": "Data Received",
            "event_id": str(outcome.event.event_id),
            "duplicate": outcome.duplicate,
            "deliveries": DeliveryResultSerializer(outcome.deliveries, many=True).data,
        },
        status=202 if outcome.queued else 200,
    )


class EventViewSet(viewsets.ReadOnlyModelViewSet):
    """Accepted ingests, newest first, with their deliveries and attempts in the detail view."""

    lookup_field = "event_id"
    filterset_class = EventFilter

    def get_queryset(self):
        if self.action == "retrieve":
            return Event.objects.prefetch_related("deliveries__attempts", "deliveries__event")
        return Event.objects.all()

    def get_serializer_class(self):
        return EventSerializer if self.action == "list" else EventDetailSerializer

    @extend_schema(
        request=None,
        parameters=[
            OpenApiParameter("all", OpenApiTypes.BOOL, description="Also resend succeeded deliveries.")
        ],
        responses=DeliverySerializer(many=True),
    )
    @action(detail=True, methods=["post"])
    def redeliver(self, request, event_id=None):
        """Send the event's failed deliveries again now (all of them with ?all=true)."""
        include_succeeded = serializers.BooleanField().to_internal_value(
            request.query_params.get("all", "false")
        )
        deliveries = event_redeliver(event=self.get_object(), include_succeeded=include_succeeded)
        return Response(DeliverySerializer(deliveries, many=True).data)


class DeliveryViewSet(viewsets.ReadOnlyModelViewSet):
    """Deliveries (one per event and destination), with their attempts in the detail view."""

    lookup_field = "delivery_id"
    filterset_class = DeliveryFilter

    def get_queryset(self):
        deliveries = Delivery.objects.select_related("event", "destination")
        return deliveries.prefetch_related("attempts") if self.action == "retrieve" else deliveries

    def get_serializer_class(self):
        return DeliverySerializer if self.action == "list" else DeliveryDetailSerializer

    @extend_schema(request=None, responses={200: DeliveryDetailSerializer, 409: OpenApiTypes.OBJECT})
    @action(detail=True, methods=["post"])
    def retry(self, request, delivery_id=None):
        """Send the delivery again now, with the same webhook-id; answers with the new attempt."""
        delivery = self.get_object()
        try:
            delivery = delivery_retry(delivery=delivery)
        except DestinationDeleted:
            return Response(
                {"detail": "The destination of this delivery was deleted; it cannot be sent again."},
                status=status.HTTP_409_CONFLICT,
            )
        return Response(DeliveryDetailSerializer(delivery).data)
