from rest_framework import serializers

from server.models import Attempt, Delivery, Event


class BlankAsNullField(serializers.CharField):
    """A read-only text shown as null when empty (`"error": null` on success)."""

    def __init__(self, **kwargs):
        super().__init__(read_only=True, allow_null=True, **kwargs)

    def to_representation(self, value):
        return value or None


class AttemptSerializer(serializers.ModelSerializer):
    error = BlankAsNullField()

    class Meta:
        model = Attempt
        fields = ["status_code", "response_body", "error", "duration_ms", "started_at", "finished_at"]
        read_only_fields = fields


class DeliverySerializer(serializers.ModelSerializer):
    event_id = serializers.UUIDField(read_only=True)
    account = serializers.UUIDField(source="event.account_id", read_only=True)
    destination_id = serializers.IntegerField(read_only=True, allow_null=True)
    status_code = serializers.IntegerField(source="last_status_code", read_only=True, allow_null=True)
    error = BlankAsNullField()

    class Meta:
        model = Delivery
        fields = [
            "delivery_id",
            "event_id",
            "account",
            "destination_id",
            "url",
            "http_method",
            "status",
            "attempt_count",
            "status_code",
            "duration_ms",
            "error",
            "created_at",
            "updated_at",
            "processed_at",
        ]
        read_only_fields = fields


class DeliveryDetailSerializer(DeliverySerializer):
    attempts = AttemptSerializer(many=True, read_only=True)

    class Meta(DeliverySerializer.Meta):
        fields = [*DeliverySerializer.Meta.fields, "attempts"]
        read_only_fields = fields


class EventSerializer(serializers.ModelSerializer):
    class Meta:
        model = Event
        fields = ["event_id", "account", "external_id", "received_at", "processed_at"]
        read_only_fields = fields


class EventDetailSerializer(EventSerializer):
    deliveries = DeliveryDetailSerializer(many=True, read_only=True)

    class Meta(EventSerializer.Meta):
        fields = [*EventSerializer.Meta.fields, "body", "deliveries"]
        read_only_fields = fields
