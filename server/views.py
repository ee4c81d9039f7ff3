import re
from typing import Any

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from datapusher.errors import ingest_error
from datapusher.filters import ListFiltersMixin
from datapusher.ratelimit import limit_wait
from datapusher.schema import DETAIL, FIELD_ERRORS
from destinations.addresses import url_without_credentials
from server.access_log import ingest_logged, ingest_note
from server.filters import DeliveryFilter, EventFilter
from server.metrics import ingests_counted
from server.models import Delivery
from server.payload import InvalidPayload, LengthRequired, PayloadTooLarge, payload_parse, request_body
from server.selectors import (
    delivery_detail_list,
    delivery_list,
    event_detail_list,
    event_list,
    ingest_target_by_token,
)
from server.serializers import (
    DeliveryDetailSerializer,
    DeliverySerializer,
    EventDetailSerializer,
    EventSerializer,
)
from server.services.delivery import payload_needs_data
from server.services.dispatch import queue_mode
from server.services.ingest import AccountBusy, EventIdConflict, event_ingest
from server.services.log import (
    DeliveryBusy,
    DestinationDeleted,
    DestinationDisabled,
    delivery_retry,
    event_redeliver,
)

TOKEN_HEADER = "CL-X-TOKEN"  # noqa: S105 (a header name, not a secret)
EVENT_ID_HEADER = "CL-X-EVENT-ID"
EVENT_ID = re.compile(r"[!-~][ -~]{0,254}")  # 1-255 printable ASCII characters
# An account at its share of waiting ingests is asked to come back this many seconds later.
ACCOUNT_BUSY_RETRY_AFTER_SECONDS = 1


@csrf_exempt
@ingests_counted
@ingest_logged
def incoming_data(request: HttpRequest) -> JsonResponse:
    """Receive a JSON object for the account owning the CL-X-TOKEN and push it to its destinations.

    Checks in order: method (405), token (401), the account's rate limit (429, nothing stored),
    body and CL-X-EVENT-ID (400 with an `error` saying why / 411 / 413), the account's share of this
    process (429), a CL-X-EVENT-ID already used with another body (409, nothing stored or sent);
    then 200 with one entry per destination (202 with pending entries in queue mode). Authenticated by the
    token alone: no user session, no CSRF.
    """
    if request.method != "POST":
        response = ingest_error(status=405, message="Invalid Data")
        response["Allow"] = "POST"
        return response
    target = ingest_target_by_token(token=request.headers.get(TOKEN_HEADER, ""))
    if target is None:
        return ingest_error(status=401, message="Un Authenticate")
    ingest_note(request, account_id=str(target.account_id))
    wait = limit_wait(
        group="ingest",
        key=str(target.account_id),
        rate=target.rate_limit or settings.DATAPUSHER_INGEST_RATE_LIMIT,
        count=True,
    )
    if wait is not None:
        return _too_many_requests(retry_after=wait)
    try:
        body = request_body(request=request)
        text, data = payload_parse(
            body=body,
            content_type=request.content_type or "",
            charset=request.content_params.get("charset"),
        )
    except PayloadTooLarge:
        return ingest_error(status=413, message="Payload Too Large")
    except LengthRequired:
        return ingest_error(status=411, message="Length Required")
    except InvalidPayload as err:
        return ingest_error(status=400, message="Invalid Data", error=str(err))
    if not payload_needs_data(destinations=target.destinations):
        data = None  # parsed to be checked; not held through the sends when no destination needs it
    external_id = request.headers.get(EVENT_ID_HEADER) or None
    if external_id is not None and not EVENT_ID.fullmatch(external_id):
        return ingest_error(
            status=400,
            message="Invalid Data",
            error=f"{EVENT_ID_HEADER} must be 1 to 255 printable ASCII characters.",
        )
    try:
        outcome = event_ingest(target=target, body=body, text=text, data=data, external_id=external_id)
    except AccountBusy:
        return _too_many_requests(retry_after=ACCOUNT_BUSY_RETRY_AFTER_SECONDS)
    except EventIdConflict:
        return ingest_error(
            status=409,
            message="Conflict",
            error=f"{EVENT_ID_HEADER} {external_id} was already used with a different body.",
        )
    ingest_note(request, event_id=str(outcome.event.event_id), destinations=len(outcome.deliveries))
    return JsonResponse(
        {
            "success": True,
            "message": "Data Received",
            "event_id": str(outcome.event.event_id),
            "duplicate": outcome.duplicate,
            "deliveries": [_delivery_result(delivery) for delivery in outcome.deliveries],
        },
        status=202 if outcome.queued else 200,
    )


def _too_many_requests(*, retry_after: int) -> JsonResponse:
    response = ingest_error(status=429, message="Too Many Requests")
    response["Retry-After"] = str(retry_after)
    return response


def _delivery_result(delivery: Delivery) -> dict[str, Any]:
    """One delivery as the ingest answers it (built by hand: a serializer cost 9 % of an ingest)."""
    return {
        "delivery_id": str(delivery.delivery_id),
        "destination_id": delivery.destination_id,
        "url": url_without_credentials(delivery.url),
        "http_method": delivery.http_method,
        "status": delivery.status,
        "status_code": delivery.last_status_code,
        "error": delivery.error or None,
        "duration_ms": delivery.duration_ms,
    }


class EventViewSet(ListFiltersMixin, viewsets.ReadOnlyModelViewSet):
    """Accepted ingests, newest first, with their deliveries and attempts in the detail view."""

    lookup_field = "event_id"
    filterset_class = EventFilter
    ordering_fields = ["received_at"]
    member_actions = ("redeliver",)

    def get_queryset(self):
        select = event_detail_list if self.action == "retrieve" else event_list
        return select(user=self.request.user)

    def get_serializer_class(self):
        return EventSerializer if self.action == "list" else EventDetailSerializer

    @extend_schema(
        request=None,
        filters=False,
        parameters=[
            OpenApiParameter("all", OpenApiTypes.BOOL, description="Also resend succeeded deliveries.")
        ],
        responses={
            200: OpenApiResponse(
                DeliverySerializer(many=True),
                description="Sync mode: the deliveries sent again, each with its new outcome (an empty "
                "list when none was to be sent).",
            ),
            202: OpenApiResponse(
                DeliverySerializer(many=True),
                description="Queue mode: the deliveries to send again, pending and due now, for the workers.",
            ),
            400: OpenApiResponse(FIELD_ERRORS, description="?all= is not a boolean."),
        },
    )
    @action(detail=True, methods=["post"], pagination_class=None)
    def redeliver(self, request, event_id=None):
        """Send the event's deliveries that have not succeeded again (all of them with ?all=true),
        except any being sent right now. Sync mode: sent now, 200 with their new outcome. Queue mode:
        202 with them pending, due now, for the workers."""
        try:
            include_succeeded = serializers.BooleanField().to_internal_value(
                request.query_params.get("all", "false")
            )
        except serializers.ValidationError as err:
            raise serializers.ValidationError({"all": err.detail}) from err
        deliveries = event_redeliver(event=self.get_object(), include_succeeded=include_succeeded)
        return Response(DeliverySerializer(deliveries, many=True).data, status=_sent_status())


class DeliveryViewSet(ListFiltersMixin, viewsets.ReadOnlyModelViewSet):
    """Deliveries (one per event and destination), with their attempts in the detail view."""

    lookup_field = "delivery_id"
    filterset_class = DeliveryFilter
    ordering_fields = ["created_at", "processed_at"]
    member_actions = ("retry",)  # the only write here: the permission never needs a delivery's account

    def get_queryset(self):
        select = delivery_detail_list if self.action == "retrieve" else delivery_list
        return select(user=self.request.user)

    def get_serializer_class(self):
        return DeliverySerializer if self.action == "list" else DeliveryDetailSerializer

    @extend_schema(
        request=None,
        filters=False,
        responses={
            200: OpenApiResponse(DeliveryDetailSerializer, description="Sync mode: sent, with its attempt."),
            202: OpenApiResponse(DeliveryDetailSerializer, description="Queue mode: pending, due now."),
            409: OpenApiResponse(
                DETAIL,
                description="It is being sent right now, or its destination was deleted or is disabled.",
            ),
        },
    )
    @action(detail=True, methods=["post"])
    def retry(self, request, delivery_id=None):
        """Send the delivery again, with the same webhook-id. Sync mode: 200 with its new attempt;
        queue mode: 202 with it pending, due now. 409 if it is being sent right now or its
        destination was deleted or is disabled (resume the destination to send its paused backlog)."""
        try:
            delivery = delivery_retry(delivery=self.get_object())
        except DestinationDeleted:
            return _conflict("The destination of this delivery was deleted; it cannot be sent again.")
        except DestinationDisabled as err:
            return _conflict(
                f"Not sent: {err.reason}. Resume the destination (POST /api/destinations/{err.destination_id}"
                "/resume/) to send its paused deliveries."
            )
        except DeliveryBusy:
            return _conflict("This delivery is being sent right now; try again when that attempt has ended.")
        return Response(DeliveryDetailSerializer(delivery).data, status=_sent_status())


def _sent_status() -> int:
    """200 when a redelivery was sent before answering (sync mode), 202 when it was queued."""
    return status.HTTP_202_ACCEPTED if queue_mode() else status.HTTP_200_OK


def _conflict(detail: str) -> Response:
    return Response({"detail": detail}, status=status.HTTP_409_CONFLICT)
