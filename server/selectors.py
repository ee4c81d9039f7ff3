"""The delivery log's read side, as the log API shows it."""

from django.db.models import QuerySet

from server.models import Delivery, Event


def event_list() -> QuerySet[Event]:
    """Events, newest first."""
    return Event.objects.all()


def event_detail_list() -> QuerySet[Event]:
    """Events with their deliveries and each delivery's attempts, for detail views."""
    return Event.objects.prefetch_related("deliveries__attempts", "deliveries__event")


def delivery_list() -> QuerySet[Delivery]:
    """Deliveries in the order they were created, with what their list entries show."""
    return Delivery.objects.select_related("event", "destination")


def delivery_detail_list() -> QuerySet[Delivery]:
    """Deliveries with their attempts, for detail views."""
    return delivery_list().prefetch_related("attempts")
