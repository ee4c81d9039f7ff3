from datetime import UTC

from rest_framework import serializers

from datapusher.serializers import KnownFieldsOnly
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


class AwareDateTimeField(serializers.DateTimeField):
    """An ISO 8601 date-time with its time zone (Z or an offset), in UTC; one without is refused."""

    default_error_messages = {"naive": "Give the time zone (Z or an offset such as +02:00)."}

    def __init__(self, **kwargs):
        super().__init__(input_formats=["iso-8601"], default_timezone=UTC, **kwargs)

    def enforce_timezone(self, value):
        if value.tzinfo is None:
            self.fail("naive")
        return super().enforce_timezone(value)


# What a recovery takes when `status` is left out.
RECOVER_DEFAULT_STATUSES = [Delivery.Status.FAILED.value]


class RecoverSerializer(KnownFieldsOnly, serializers.Serializer):
    since = AwareDateTimeField(help_text="From this time of reception of the events (included).")
    until = AwareDateTimeField(help_text="To this one (excluded); after `since`.")
    status = serializers.ListField(
        child=serializers.ChoiceField(choices=Delivery.Status.choices),
        allow_empty=False,
        default=RECOVER_DEFAULT_STATUSES,
        help_text='The statuses of the deliveries to send once more; ["failed"] when left out.',
    )
    dry_run = serializers.BooleanField(
        default=False, help_text="Only count the deliveries that match (200), send nothing."
    )

    def validate(self, attrs):
        if attrs["since"] >= attrs["until"]:
            raise serializers.ValidationError({"until": ["Must be after since."]})
        attrs["status"] = sorted(set(attrs["status"]))
        return attrs


class RecoverCountSerializer(serializers.Serializer):
    count = serializers.IntegerField(help_text="The deliveries that match.")


class RecoverySerializer(serializers.Serializer):
    recovery_id = serializers.UUIDField(source="recovery.recovery_id")
    account = serializers.UUIDField(source="recovery.account_id")
    destination_id = serializers.IntegerField(
        source="recovery.destination_id",
        allow_null=True,
        help_text="null: all the account's destinations (or its destination was deleted since).",
    )
    since = serializers.DateTimeField(source="recovery.since")
    until = serializers.DateTimeField(source="recovery.until")
    statuses = serializers.ListField(
        source="recovery.statuses", child=serializers.ChoiceField(choices=Delivery.Status.choices)
    )
    queued = serializers.BooleanField(
        source="recovery.queued", help_text="Sent by the workers (true) or from the request (false)."
    )
    status = serializers.ChoiceField(
        choices=["running", "done"], help_text="running while a delivery it took is still pending."
    )
    count = serializers.IntegerField(source="recovery.count", help_text="The deliveries that matched.")
    taken = serializers.IntegerField(help_text="Of those, the ones it sends once more.")
    skipped = serializers.DictField(
        source="recovery.skipped",
        child=serializers.IntegerField(),
        help_text="The others, by reason (being sent right now, destination deleted, did not fit).",
    )
    sent = serializers.IntegerField(help_text="Attempted since it started.")
    succeeded = serializers.IntegerField()
    failed = serializers.IntegerField()
    pending = serializers.IntegerField(help_text="Waiting to be sent.")
    paused = serializers.IntegerField(help_text="Kept for their destination's resume.")
    created_at = serializers.DateTimeField(source="recovery.created_at")
    finished_at = serializers.DateTimeField(allow_null=True)
