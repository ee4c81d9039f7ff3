from django_filters import rest_framework as filters

from datapusher.filters import IdFilter, UtcDateTimeFilter
from server.models import Delivery, Event


class EventFilter(filters.FilterSet):
    account = filters.UUIDFilter(field_name="account_id")
    received_after = UtcDateTimeFilter(field_name="received_at", lookup_expr="gte")
    received_before = UtcDateTimeFilter(field_name="received_at", lookup_expr="lt")
    external_id = filters.CharFilter(field_name="external_id")

    class Meta:
        model = Event
        fields = ["account", "external_id"]


class DeliveryFilter(filters.FilterSet):
    account = filters.UUIDFilter(field_name="event__account_id")
    destination = IdFilter(field_name="destination_id")
    status = filters.ChoiceFilter(choices=Delivery.Status.choices)
    created_after = UtcDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = UtcDateTimeFilter(field_name="created_at", lookup_expr="lt")
    processed_after = UtcDateTimeFilter(field_name="processed_at", lookup_expr="gte")
    processed_before = UtcDateTimeFilter(field_name="processed_at", lookup_expr="lt")

    class Meta:
        model = Delivery
        fields = ["account", "destination", "status"]
