from datetime import UTC

from django import forms
from django.core.exceptions import ValidationError
from django_filters import fields
from django_filters import rest_framework as filters

from server.models import Delivery, Event


class UtcDateTimeField(fields.IsoDateTimeField):
    """An ISO 8601 date-time, converted to UTC: the database gets no offset it could refuse
    (PostgreSQL takes none of ±16:00 or more) and no instant outside years 1 to 9999 in UTC."""

    default_error_messages = {"out_of_range": "Enter a date/time between 0001-01-01 and 9999-12-31 in UTC."}

    def to_python(self, value):
        parsed = super().to_python(value)
        if parsed is None:
            return None
        try:
            return parsed.astimezone(UTC)
        except (OverflowError, ValueError) as err:
            raise ValidationError(self.error_messages["out_of_range"], code="out_of_range") from err


class UtcDateTimeFilter(filters.IsoDateTimeFilter):
    field_class = UtcDateTimeField


class IdFilter(filters.NumberFilter):
    """A database id: a whole number the database can hold (anything else is a 400, not a 500)."""

    field_class = forms.IntegerField

    def __init__(self, *args, **kwargs):
        super().__init__(*args, min_value=1, max_value=2**63 - 1, **kwargs)


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
