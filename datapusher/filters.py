from datetime import UTC

from django import forms
from django.core.exceptions import ValidationError
from django_filters import fields
from django_filters import rest_framework as filters
from django_filters.rest_framework import DjangoFilterBackend
from rest_framework.filters import OrderingFilter, SearchFilter


class ListFiltersMixin:
    """For viewsets: the filter backends (query parameters such as ?account=) narrow the list only.

    DRF's get_object() filters too, so without this a detail view, an update or a detail action
    would answer 404 or 400 because of a list parameter left in its URL.
    """

    # django-filter's filtersets, ?search= over the view's search_fields and ?ordering= over its
    # ordering_fields (each named on the view: only indexed or small columns).
    filter_backends = [DjangoFilterBackend, SearchFilter, OrderingFilter]
    ordering_fields: list[str] = []

    def filter_queryset(self, queryset):
        if self.action != "list":
            return queryset
        return super().filter_queryset(queryset)


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
