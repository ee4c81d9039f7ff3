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
from destinations.models import Destination


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


def changelist_link(model: str, label: str, **filters: object) -> str:
    """A link to the admin list of `model` ("app_label.model_name": by name, so that an app may
    link to one it does not depend on), filtered by `filters` (query parameters)."""
    url = reverse(f"admin:{model.replace('.', '_')}_changelist")
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
    actions = ["rotate_token"]  # server/admin.py adds send_test_event

    @admin.display(description="delivery log")
    def log(self, account: Account) -> str:
        if account.pk is None:
            return "-"
        return format_html_join(
            " · ",
            "{}",
            [
                (changelist_link("destinations.destination", "destinations", account__pk__exact=account.pk),),
                (changelist_link("server.event", "events", account__pk__exact=account.pk),),
                (changelist_link("server.delivery", "deliveries", event__account=account.pk),),
            ],
        )

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
