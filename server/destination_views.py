"""The destinations API's endpoints that touch deliveries: resuming a destination with its paused
backlog, recovering a range of its deliveries, and deleting one with its unsent deliveries. Here,
not in `destinations`, because the apps depend one way (server → destinations); the router serves
this viewset at /api/destinations/."""

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.decorators import action
from rest_framework.response import Response

from destinations.serializers import DestinationDeletedSerializer, DestinationResumeSerializer
from destinations.views import DestinationViewSet
from server.recovery_views import recover_range, recover_schema
from server.services.lifecycle import destination_delete, destination_resume


class DestinationLifecycleViewSet(DestinationViewSet):
    """Destinations of the accounts the user is a member of; created, changed, resumed and deleted
    by the account's admins (only for, or to, accounts they administer); any member recovers a range."""

    member_actions = ("recover",)

    @extend_schema(
        responses=OpenApiResponse(
            DestinationDeletedSerializer, description="Deleted; how many unsent deliveries went with it."
        )
    )
    def destroy(self, request, *args, **kwargs):
        """Delete the destination; its deliveries not sent yet fail for good (they stay in the log)."""
        dropped = destination_delete(destination=self.get_object())
        return Response(DestinationDeletedSerializer({"deleted_pending": dropped}).data)

    @extend_schema(request=None, responses=DestinationResumeSerializer)
    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None):
        """Enable the destination and send its paused deliveries, oldest first: in queue mode by the
        workers, in sync mode as many as the request's time allows (the rest stay pending)."""
        resumed = destination_resume(destination=self.get_object(), by=request.user)
        return Response(DestinationResumeSerializer(resumed).data)

    @recover_schema
    @action(detail=True, methods=["post"])
    def recover(self, request, pk=None):
        """Send once more the destination's deliveries whose events were received in [since, until),
        in the statuses given (failed when left out), oldest first; or only count them (dry_run)."""
        destination = self.get_object()
        return recover_range(request=request, account=destination.account, destination=destination)
