"""Recovering a range (server/services/recovery.py): started for an account, or for one of its
destinations (DestinationLifecycleViewSet.recover), and its progress read by id."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.generics import get_object_or_404
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.models import Account
from accounts.selectors import account_list
from destinations.models import Destination
from server.selectors import recovery_deliveries, recovery_list, recovery_progress_get
from server.serializers import RecoverCountSerializer, RecoverSerializer, RecoverySerializer
from server.services.recovery import recovery_start

recover_schema = extend_schema(
    request=RecoverSerializer,
    responses={
        200: OpenApiResponse(RecoverCountSerializer, description="dry_run: how many deliveries match."),
        202: OpenApiResponse(
            RecoverySerializer,
            description="Started: in queue mode the workers send the deliveries; in sync mode they were "
            "sent before this answer, as many as the request's bounds allow (the rest in `skipped`).",
        ),
    },
)


def recover_range(*, request: Request, account: Account, destination: Destination | None) -> Response:
    """POST .../recover/: validate the range, then count it (dry_run) or start its recovery."""
    serializer = RecoverSerializer(data=request.data)
    serializer.is_valid(raise_exception=True)
    data = serializer.validated_data
    bounds = {
        "account": account,
        "destination": destination,
        "since": data["since"],
        "until": data["until"],
        "statuses": data["status"],
    }
    if data["dry_run"]:
        return Response(RecoverCountSerializer({"count": recovery_deliveries(**bounds).count()}).data)
    recovery = recovery_start(**bounds)
    return Response(
        RecoverySerializer(recovery_progress_get(recovery=recovery)).data, status=status.HTTP_202_ACCEPTED
    )


@extend_schema(parameters=[OpenApiParameter("account_id", OpenApiTypes.UUID, OpenApiParameter.PATH)])
class AccountRecoverViewSet(viewsets.GenericViewSet):
    """Recovering a range of one account's deliveries, for any member (404 for other accounts)."""

    queryset = Account.objects.none()  # the account is the URL's; this one names the model
    member_actions = ("recover",)

    @recover_schema
    def recover(self, request, account_id=None):
        """Send once more the account's deliveries whose events were received in [since, until), in
        the statuses given (failed when left out), oldest first; or only count them (dry_run)."""
        account = get_object_or_404(account_list(user=request.user), account_id=account_id)
        self.check_object_permissions(request, account)
        return recover_range(request=request, account=account, destination=None)


class RecoveryViewSet(mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Recoveries of the accounts the user is a member of, with their progress."""

    lookup_field = "recovery_id"
    serializer_class = RecoverySerializer

    def get_queryset(self):
        return recovery_list(user=self.request.user)

    def retrieve(self, request, *args, **kwargs):
        """The recovery and its progress: running or done, and its deliveries' counts."""
        return Response(RecoverySerializer(recovery_progress_get(recovery=self.get_object())).data)
