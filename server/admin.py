"""The delivery log in the operator console: events, deliveries and attempts, read-only, newest
first, with redeliver/retry actions (docs/admin.md)."""

import functools
import operator
import uuid
from datetime import timedelta

from django.conf import settings
from django.contrib import admin, messages
from django.db.models import Exists, OuterRef, Prefetch, Q, QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html
from django.utils.text import Truncator

from accounts.admin import LIST_AND_PAGE, AccountAdmin, autocomplete_filter, change_link, changelist_link
from accounts.models import Account
from destinations.addresses import url_without_credentials
from destinations.admin import DestinationAdmin
from destinations.auth import AuthType
from destinations.models import Destination
from server import broker
from server.models import Attempt, Delivery, Event, Recovery
from server.selectors import RecoveryProgress, recovery_progress_get
from server.services.ingest import AccountBusy, IngestOutcome, event_send_test
from server.services.lifecycle import destination_delete, destination_resume
from server.services.log import ActionClock, Resend, deliveries_resend
from server.services.recovery import recovery_start

ERROR_EXCERPT_CHARS = 60
# The admin's recovery: the failed deliveries of the events received this long before the action.
RECOVER_WINDOW = timedelta(hours=24)


def _short_id(value: uuid.UUID) -> str:
    """The first 8 hex digits: enough to tell rows apart on a page (the full id is on its page)."""
    return str(value)[:8]


def _excerpt(text: str) -> str:
    return Truncator(text).chars(ERROR_EXCERPT_CHARS) or "-"


def _plural(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


def _term_uuid(term: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(term)
    except ValueError:
        return None


def _sent_to(delivery: Delivery) -> str:
    return f"{delivery.http_method} {url_without_credentials(delivery.url)}"


def resend_message(resend: Resend) -> tuple[str, int]:
    """What a redeliver/retry action tells the operator (and its level): how many were sent, how
    many of those succeeded and failed (or that they were queued), how many skipped and why."""
    if not resend.selected:
        return "Nothing to send: the selection has no deliveries.", messages.WARNING
    taken = resend.taken
    selected = _plural(resend.selected, "selected delivery", "selected deliveries")
    of_selected = f"{len(taken)} of the {selected}"
    if resend.queued:
        message = f"Queued {of_selected} for the workers."
        all_well = True
    else:
        by_status = {status: sum(d.status == status for d in taken) for status in Delivery.Status}
        message = (
            f"Sent {of_selected}: {by_status[Delivery.Status.SUCCEEDED]} succeeded, "
            f"{by_status[Delivery.Status.FAILED]} failed"
        )
        if by_status[Delivery.Status.PENDING]:
            message += (
                f", {by_status[Delivery.Status.PENDING]} not started (this process is at its delivery "
                "limit; they stay pending)"
            )
        message += "."
        all_well = by_status[Delivery.Status.SUCCEEDED] == len(taken)
    if resend.skipped:
        reasons = ", ".join(f"{count} {reason}" for reason, count in sorted(resend.skipped.items()))
        message += f" {resend.skipped.total()} skipped: {reasons}."
    return message, messages.SUCCESS if all_well and not resend.skipped else messages.WARNING


def progress_message(progress: RecoveryProgress) -> str:
    """A recovery's progress in a line: what it took, sent and skipped, and whether it is done."""
    recovery = progress.recovery
    message = (
        f"{_plural(recovery.count, 'delivery matched', 'deliveries matched')}, {progress.taken} taken: "
        f"{progress.sent} sent ({progress.succeeded} succeeded, {progress.failed} failed), "
        f"{progress.pending} pending, {progress.paused} paused; {progress.status}"
    )
    if recovery.skipped:
        reasons = ", ".join(f"{count} {reason}" for reason, count in sorted(recovery.skipped.items()))
        message += f"; skipped: {reasons}"
    return message + "."


def message_after_test_event(*, account: Account, outcome: IngestOutcome) -> tuple[str, int]:
    """The message after a test event, with one result per destination, and its level."""
    results = [
        f"{_sent_to(d)} — {d.status}"
        + (f", HTTP {d.last_status_code}" if d.last_status_code is not None else "")
        + (f" in {d.duration_ms} ms" if d.duration_ms is not None else "")
        + (f": {d.error}" if d.error and d.status != Delivery.Status.SUCCEEDED else "")
        for d in outcome.deliveries
    ]
    event = f"Test event {outcome.event.event_id} of {account.account_name}"
    if not results:
        return f"{event} stored; the account has no destination, so nothing was sent.", messages.WARNING
    verb = "queued for" if outcome.queued else "sent to"
    where = f"{len(results)} destination{'s' if len(results) > 1 else ''}"
    message = f"{event} {verb} {where}: " + "; ".join(results) + "."
    succeeded = all(d.status == Delivery.Status.SUCCEEDED for d in outcome.deliveries)
    return message, messages.SUCCESS if succeeded or outcome.queued else messages.WARNING


class ReadOnlyAdmin(admin.ModelAdmin):
    """The log is written by the delivery engine only. Its search takes one exact id (search_by_id)
    or else one exact text (search_by_text; None: nothing matches), so that it stays on indexes."""

    show_full_result_count = False  # a second COUNT(*) of a large table on every filtered page
    show_facets = admin.ShowFacets.NEVER  # a COUNT per filter choice over the whole table

    def search_by_id(self, term: uuid.UUID) -> Q:
        raise NotImplementedError

    def search_by_text(self, term: str) -> Q | None:
        return None

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        as_id = _term_uuid(term)
        # A UUID may be an id or a sender's CL-X-EVENT-ID (many use UUIDs): both are looked for.
        conditions = [
            condition
            for condition in (None if as_id is None else self.search_by_id(as_id), self.search_by_text(term))
            if condition is not None
        ]
        if not conditions:
            return queryset.none(), False
        return queryset.filter(functools.reduce(operator.or_, conditions)), False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # retention is purge_events' (in batches), not a page of the admin


class ResendAdmin(ReadOnlyAdmin):
    """Redeliver (all selected) and retry (those not succeeded) actions over the deliveries that
    `deliveries_of` selects, on the list and on the change page."""

    actions = ["redeliver", "retry_failed"]

    def deliveries_of(self, queryset: QuerySet) -> QuerySet[Delivery]:
        raise NotImplementedError

    def has_redeliver_permission(self, request: HttpRequest) -> bool:
        """Sending again needs the change permission on deliveries (the log stays read-only)."""
        return request.user.has_perm("server.change_delivery")

    def _resend(self, request: HttpRequest, queryset: QuerySet, *, failed_only: bool) -> None:
        deliveries = self.deliveries_of(queryset)
        selected = deliveries.count()
        if selected > settings.DATAPUSHER_ADMIN_ACTION_MAX_DELIVERIES:
            self.message_user(
                request,
                f"Nothing sent: {selected} deliveries selected, and an action sends at most "
                f"{settings.DATAPUSHER_ADMIN_ACTION_MAX_DELIVERIES}. Select fewer (a filter, a date), "
                "or use the API's redeliver per event.",
                messages.ERROR,
            )
            return
        resend = deliveries_resend(deliveries=deliveries, failed_only=failed_only)
        self.message_user(request, *resend_message(resend))

    @admin.action(
        description="Redeliver now (succeeded ones too)", permissions=["redeliver"], location=LIST_AND_PAGE
    )
    def redeliver(self, request, queryset):
        self._resend(request, queryset, failed_only=False)

    @admin.action(
        description="Retry now those not succeeded", permissions=["redeliver"], location=LIST_AND_PAGE
    )
    def retry_failed(self, request, queryset):
        self._resend(request, queryset, failed_only=True)


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
    fields = ["destination", "target", "status", "attempt_count", "last_status_code", "error"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("destination")

    @admin.display(description="sent to")
    def target(self, delivery: Delivery) -> str:
        return _sent_to(delivery)


@admin.register(Event)
class EventAdmin(ResendAdmin):
    list_display = [
        "short_id",
        "account_link",
        "external_id",
        "deliveries_summary",
        "received_at",
        "processed_at",
    ]
    list_filter = [autocomplete_filter("account", "account")]
    list_select_related = ["account"]
    date_hierarchy = "received_at"
    ordering = ["-received_at"]
    search_fields = ["event_id"]  # shows the search box; get_search_results decides
    search_help_text = "An event id, a delivery id, or the sender's CL-X-EVENT-ID (exact)."
    fields = ["event_id", "account", "external_id", "body", "received_at", "processed_at"]
    inlines = [DeliveryInline]

    def get_queryset(self, request):
        statuses = Delivery.objects.only("id", "event_id", "status").order_by()
        return super().get_queryset(request).prefetch_related(Prefetch("deliveries", queryset=statuses))

    def search_by_id(self, term):
        return Q(event_id=term) | Exists(Delivery.objects.filter(event=OuterRef("pk"), delivery_id=term))

    def search_by_text(self, term):
        return Q(external_id=term)

    def deliveries_of(self, queryset):
        return Delivery.objects.filter(event__in=queryset.values("pk"))

    @admin.display(description="event", ordering="event_id")
    def short_id(self, event: Event) -> str:
        return _short_id(event.event_id)

    @admin.display(description="account", ordering="account__account_name")
    def account_link(self, event: Event) -> str:
        return change_link(event.account, event.account.account_name)

    @admin.display(description="deliveries")
    def deliveries_summary(self, event: Event) -> str:
        deliveries = list(event.deliveries.all())
        if not deliveries:
            return "none"
        counts = {status: sum(d.status == status for d in deliveries) for status in Delivery.Status}
        summary = ", ".join(f"{count} {status}" for status, count in counts.items() if count)
        return changelist_link("server.delivery", summary, event=event.event_id)


@admin.register(Delivery)
class DeliveryAdmin(ResendAdmin):
    list_display = [
        "short_id",
        "status",
        "last_status_code",
        "duration_ms",
        "error_excerpt",
        "destination_link",
        "event_link",
        "attempt_count",
        "created_at",
    ]
    list_filter = [
        "status",
        autocomplete_filter("account", "event__account"),
        autocomplete_filter("destination", "destination"),
    ]
    list_select_related = ["destination"]
    date_hierarchy = "created_at"
    ordering = ["-id"]
    search_fields = ["delivery_id"]  # shows the search box; get_search_results decides
    search_help_text = "A delivery id, an event id, or the sender's CL-X-EVENT-ID (exact)."
    fields = [
        "delivery_id",
        "event",
        "account_link",
        "destination",
        "target",
        "status",
        "attempt_count",
        "last_status_code",
        "duration_ms",
        "error",
        "created_at",
        "processed_at",
        "next_attempt_at",
        "recovery",
    ]
    readonly_fields = ["account_link", "target"]
    inlines = [AttemptInline]

    def search_by_id(self, term):
        return Q(delivery_id=term) | Q(event_id=term)

    def search_by_text(self, term):
        return Q(event__external_id=term)

    def deliveries_of(self, queryset):
        return queryset

    @admin.display(description="delivery", ordering="id")
    def short_id(self, delivery: Delivery) -> str:
        return _short_id(delivery.delivery_id)

    @admin.display(description="error")
    def error_excerpt(self, delivery: Delivery) -> str:
        return _excerpt(delivery.error)

    @admin.display(description="destination")
    def destination_link(self, delivery: Delivery) -> str:
        label = _sent_to(delivery)
        if delivery.destination is None:
            return f"{label} (deleted)"
        return change_link(delivery.destination, label)

    @admin.display(description="event")
    def event_link(self, delivery: Delivery) -> str:
        return changelist_link("server.event", _short_id(delivery.event_id), q=delivery.event_id)

    @admin.display(description="account")
    def account_link(self, delivery: Delivery) -> str:
        return change_link(delivery.event.account)

    @admin.display(description="sent to")
    def target(self, delivery: Delivery) -> str:
        return _sent_to(delivery)


@admin.register(Attempt)
class AttemptAdmin(ReadOnlyAdmin):
    list_display = ["started_at", "delivery_link", "status_code", "duration_ms", "error_excerpt"]
    list_filter = [autocomplete_filter("destination", "delivery__destination")]
    list_select_related = ["delivery"]
    date_hierarchy = "started_at"
    ordering = ["-id"]
    search_fields = ["delivery__delivery_id"]  # shows the search box; get_search_results decides
    search_help_text = "A delivery id or an event id."
    fields = ["delivery", "started_at", "finished_at", "status_code", "duration_ms", "error", "response_body"]

    def search_by_id(self, term):
        return Q(delivery__delivery_id=term) | Q(delivery__event_id=term)

    @admin.display(description="delivery")
    def delivery_link(self, attempt: Attempt) -> str:
        return change_link(attempt.delivery, _short_id(attempt.delivery.delivery_id))

    @admin.display(description="error")
    def error_excerpt(self, attempt: Attempt) -> str:
        return _excerpt(attempt.error)


class AccountConsoleAdmin(AccountAdmin):
    """The account admin (accounts/admin.py) with what needs the delivery engine, which the
    accounts app does not depend on: sending a test event."""

    actions = ["send_test_event", *AccountAdmin.actions]

    @admin.action(description="Send a test event", permissions=["change"], location=LIST_AND_PAGE)
    def send_test_event(self, request: HttpRequest, queryset) -> None:
        clock = ActionClock()
        accounts = list(queryset)
        # An account with OAuth credentials on a destination may take longer (a token fetch, a 401).
        fetching = set(
            Destination.objects.filter(
                account__in=accounts, auth__type=AuthType.OAUTH2_CLIENT_CREDENTIALS
            ).values_list("account_id", flat=True)
        )
        for position, account in enumerate(accounts):
            if not clock.may_start(fetches_token=account.pk in fetching):
                left = ", ".join(a.account_name for a in accounts[position:])
                self.message_user(request, f"Not sent, the action's time was up: {left}.", messages.WARNING)
                return
            try:
                outcome = event_send_test(account=account)
            except AccountBusy:
                self.message_user(
                    request,
                    f"{account.account_name}: no test event sent — its ingests are at their limit in "
                    "this process; try again in a second.",
                    messages.ERROR,
                )
                continue
            except Account.DoesNotExist:
                gone = f"{account.account_name}: deleted meanwhile; nothing sent."
                self.message_user(request, gone, messages.ERROR)
                continue
            self.message_user(request, *message_after_test_event(account=account, outcome=outcome))


admin.site.unregister(Account)
admin.site.register(Account, AccountConsoleAdmin)


class DestinationConsoleAdmin(DestinationAdmin):
    """Destinations with what touches their deliveries: resuming, and deleting with the unsent ones
    (here, since `destinations` does not depend on `server`)."""

    actions = ["resume", "recover_failed", *DestinationAdmin.actions]

    def delete_model(self, request: HttpRequest, obj: Destination) -> None:
        destination_delete(destination=obj)  # its unsent deliveries fail with it, as in the API

    def delete_queryset(self, request: HttpRequest, queryset) -> None:
        for destination in queryset:
            destination_delete(destination=destination)

    @admin.action(
        description="Resume: enable, close the circuit and send the deliveries held back",
        permissions=["change"],
        location=LIST_AND_PAGE,
    )
    def resume(self, request: HttpRequest, queryset) -> None:
        for destination in queryset:
            resumed = destination_resume(destination=destination, by=request.user)
            messages.success(
                request,
                f"{destination} resumed: {resumed.resumed} paused or held deliveries made due, "
                f"{resumed.sent} sent ({resumed.succeeded} succeeded), {resumed.pending} pending.",
            )

    def has_recover_permission(self, request: HttpRequest) -> bool:
        """Sending again needs the change permission on deliveries, as the log's actions do."""
        return request.user.has_perm("server.change_delivery")

    @admin.action(
        description="Recover: send once more the failed deliveries of the last 24 hours",
        permissions=["recover"],
        location=LIST_AND_PAGE,
    )
    def recover_failed(self, request: HttpRequest, queryset) -> None:
        destinations = list(queryset.select_related("account"))
        if len(destinations) > 1 and not broker.configured():
            self.message_user(
                request,
                "Nothing sent: without a broker a recovery sends from this request (for up to "
                "DATAPUSHER_ADMIN_ACTION_SECONDS), so recover one destination at a time.",
                messages.ERROR,
            )
            return
        until = timezone.now()
        for destination in destinations:
            recovery = recovery_start(
                account=destination.account,
                destination=destination,
                since=until - RECOVER_WINDOW,
                until=until,
                statuses=[Delivery.Status.FAILED],
            )
            progress = recovery_progress_get(recovery=recovery)
            self.message_user(
                request,
                format_html(
                    "{}: recovery {} — {}",
                    destination,
                    change_link(recovery),
                    progress_message(progress),
                ),
                messages.SUCCESS if not recovery.skipped else messages.WARNING,
            )


admin.site.unregister(Destination)
admin.site.register(Destination, DestinationConsoleAdmin)


@admin.register(Recovery)
class RecoveryAdmin(ReadOnlyAdmin):
    """Recoveries started by the API or the destinations' action, with their progress."""

    list_display = ["recovery_id", "account", "destination", "since", "until", "count", "created_at"]
    list_select_related = ["account", "destination"]
    ordering = ["-created_at"]
    search_fields = ["recovery_id"]  # shows the search box; get_search_results decides
    search_help_text = "A recovery id (exact)."
    fields = [
        "recovery_id",
        "account",
        "destination",
        "since",
        "until",
        "statuses",
        "queued",
        "created_at",
        "finished_at",
        "progress",
        "deliveries",
    ]
    readonly_fields = ["progress", "deliveries"]

    def search_by_id(self, term):
        return Q(recovery_id=term)

    @admin.display(description="progress")
    def progress(self, recovery: Recovery) -> str:
        return progress_message(recovery_progress_get(recovery=recovery))

    @admin.display(description="deliveries")
    def deliveries(self, recovery: Recovery) -> str:
        return changelist_link("server.delivery", "its deliveries", recovery__recovery_id__exact=recovery.pk)
