from django.contrib import admin, messages

from accounts.models import Account, AccountMember
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
    list_display = ["account_name", "email", "website", "created_at"]
    search_fields = ["email", "account_name"]
    readonly_fields = ["account_id", "app_secret_token_prefix", "created_at", "updated_at"]
    fields = [
        "account_id",
        "email",
        "account_name",
        "website",
        "app_secret_token_prefix",
        "created_at",
        "updated_at",
    ]
    inlines = [MemberInline, DestinationInline]

    def save_model(self, request, obj, form, change):
        """A new account gets its token here, shown once in the confirmation (only its hash is kept)."""
        if not change:
            obj.new_app_secret_token()
        super().save_model(request, obj, form, change)
        if not change:
            messages.warning(
                request,
                f"The app secret token of {obj.account_name} is {obj.app_secret_token} — copy it now: "
                "it is kept hashed and shown only this once.",
            )
