from django.contrib import admin

from accounts.models import Account
from destinations.models import Destination


class DestinationInline(admin.TabularInline):
    model = Destination
    extra = 0
    fields = ["url", "http_method", "headers", "created_at"]
    readonly_fields = ["created_at"]


@admin.register(Account)
class AccountAdmin(admin.ModelAdmin):
    list_display = ["account_name", "email", "website", "created_at"]
    search_fields = ["email", "account_name"]
    readonly_fields = ["account_id", "app_secret_token", "created_at", "updated_at"]
    fields = [
        "account_id",
        "email",
        "account_name",
        "website",
        "app_secret_token",
        "created_at",
        "updated_at",
    ]
    inlines = [DestinationInline]
