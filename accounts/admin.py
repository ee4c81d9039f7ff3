from admin_auto_filters.filters import AutocompleteFilterFactory
from django.contrib import admin, messages
from django.contrib.admin.options import ActionLocation, IncorrectLookupParameters
from django.contrib.admin.utils import get_fields_from_path, quote
from django.core.exceptions import ValidationError
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from accounts.models import Account, AccountMember
from accounts.services import account_rotate_token
from destinations.addresses import url_without_credentials
from destinations.models import Destination
from server.models import Delivery, Event
from server.services.ingest import AccountBusy, IngestOutcome, event_send_test


class AuthoredAdmin(admin.ModelAdmin):
    """Records who created and last changed a row (`created_by`, `updated_by`), its inlines' too."""

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        obj.updated_by = request.user
        super().save_model(request, obj, form, change)

    def save_formset(self, request, form, formset, change):
        for inline in formset.save(commit=False):
            if inline.pk is None:
                inline.created_by = request.user
            inline.updated_by = request.user
            inline.save()
        for removed in formset.deleted_objects:
            removed.delete()
        formset.save_m2m()


# Actions offered on the list page and, for the object shown, on its change page (Django 6.1's
# change-form actions: the "Action" select at the top of the page).
LIST_AND_PAGE = [ActionLocation.CHANGE_LIST, ActionLocation.CHANGE_FORM]


def autocomplete_filter(title: str, field_path: str) -> type[admin.SimpleListFilter]:
    """A list filter on the relation `field_path` that picks its value with the admin's own
    autocomplete (django-admin-autocomplete-filters): no list of every row, however many there are.
    A value that is no id of the related model is an incorrect lookup (the admin's "?e=1")."""
    base = AutocompleteFilterFactory(title, field_path, use_pk_exact=True)

    class Filter(base):
        def __init__(self, request, params, model, model_admin):
            pk = get_fields_from_path(model, field_path)[-1].related_model._meta.pk
            for value in params.get(self.parameter_name, []):
                try:
                    pk.to_python(value)
                except ValidationError as err:
                    raise IncorrectLookupParameters(err) from err
            super().__init__(request, params, model, model_admin)

    return Filter


def changelist_link(model, label: str, **filters: object) -> str:
    """A link to the model's admin list, filtered by `filters` (query parameters)."""
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    query = "&".join(f"{name}={value}" for name, value in filters.items())
    return format_html('<a href="{}?{}">{}</a>', url, query, label)


def change_link(obj, label: str | None = None) -> str:
    """A link to the object's admin change page ("-" for None)."""
    if obj is None:
        return "-"
    url = reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[quote(obj.pk)])
    return format_html('<a href="{}">{}</a>', url, str(obj) if label is None else label)


def _show_token_once(request: HttpRequest, account: Account) -> None:
    messages.warning(
        request,
        f"The app secret token of {account.account_name} is {account.app_secret_token} — copy it now: "
        "it is kept hashed and shown only this once.",
    )


def test_event_message(*, account: Account, outcome: IngestOutcome) -> tuple[str, int]:
    """The message after a test event, with one result per destination, and its level."""
    results = [
        f"{d.http_method} {url_without_credentials(d.url)} — {d.status}"
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


class MemberInline(admin.TabularInline):
    model = AccountMember
    extra = 0
    fields = ["user", "role", "created_at"]
    readonly_fields = ["created_at"]
    autocomplete_fields = ["user"]


class DestinationInline(admin.TabularInline):
    model = Destination
    extra = 0
    fields = ["url", "http_method", "headers", "created_at"]
    readonly_fields = ["created_at"]


@admin.register(Account)
class AccountAdmin(AuthoredAdmin):
    list_display = ["account_name", "email", "website", "created_at", "log"]
    search_fields = ["email", "account_name"]
    readonly_fields = ["account_id", "app_secret_token_prefix", "log", "created_at", "updated_at"]
    fields = [
        "account_id",
        "email",
        "account_name",
        "website",
        "app_secret_token_prefix",
        "log",
        "created_at",
        "updated_at",
    ]
    inlines = [MemberInline, DestinationInline]
    actions = ["send_test_event", "rotate_token"]

    @admin.display(description="delivery log")
    def log(self, account: Account) -> str:
        if account.pk is None:
            return "-"
        return format_html_join(
            " · ",
            "{}",
            [
                (changelist_link(Destination, "destinations", account__pk__exact=account.pk),),
                (changelist_link(Event, "events", account__pk__exact=account.pk),),
                (changelist_link(Delivery, "deliveries", event__account=account.pk),),
            ],
        )

    @admin.action(description="Send a test event", permissions=["change"], location=LIST_AND_PAGE)
    def send_test_event(self, request: HttpRequest, queryset) -> None:
        for account in queryset:
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
            self.message_user(request, *test_event_message(account=account, outcome=outcome))

    @admin.action(
        description="Rotate the app secret token (the old one stops working)",
        permissions=["change"],
        location=LIST_AND_PAGE,
    )
    def rotate_token(self, request: HttpRequest, queryset) -> None:
        for account in queryset:
            _show_token_once(request, account_rotate_token(account=account, by=request.user))

    def save_model(self, request, obj, form, change):
        """A new account gets its token here, shown once in the confirmation (only its hash is kept)."""
        if not change:
            obj.new_app_secret_token()
        super().save_model(request, obj, form, change)
        if not change:
            _show_token_once(request, obj)
