from django.contrib import admin, messages

from server.models import Attempt, Delivery, Event
from server.services.dispatch import queue_mode
from server.services.log import deliveries_redeliver


class AttemptInline(admin.TabularInline):
    model = Attempt
    extra = 0
    can_delete = False
    fields = ["started_at", "status_code", "duration_ms", "error", "response_body"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


class DeliveryInline(admin.TabularInline):
    model = Delivery
    extra = 0
    can_delete = False
    show_change_link = True
    fields = ["destination", "url", "http_method", "status", "attempt_count", "last_status_code", "error"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


class ReadOnlyAdmin(admin.ModelAdmin):
    """The log is written by the delivery engine only."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    list_display = ["event_id", "account", "external_id", "received_at", "processed_at"]
    list_filter = ["received_at", "account"]
    list_select_related = ["account"]
    search_fields = ["event_id", "external_id", "account__email"]
    inlines = [DeliveryInline]


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdmin):
    list_display = [
        "delivery_id",
        "url",
        "http_method",
        "status",
        "attempt_count",
        "last_status_code",
        "created_at",
    ]
    list_filter = ["status", "created_at", "event__account", "destination"]
    search_fields = ["delivery_id", "url"]
    inlines = [AttemptInline]
    actions = ["redeliver"]

    @admin.action(description="Redeliver the selected deliveries now")
    def redeliver(self, request, queryset):
        selected = queryset.count()
        sent = deliveries_redeliver(deliveries=queryset)
        verb = "Queued" if queue_mode() else "Sent"
        message = f"{verb} {len(sent)} of {selected} selected deliveries again."
        if len(sent) < selected:
            message += f" {selected - len(sent)} skipped: being sent right now, or destination deleted."
        self.message_user(request, message, messages.SUCCESS if sent else messages.WARNING)
