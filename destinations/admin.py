from django.contrib import admin

from accounts.admin import AuthoredAdmin
from destinations.models import Destination


@admin.register(Destination)
class DestinationAdmin(AuthoredAdmin):
    list_display = ["url", "http_method", "account", "created_at"]
    list_filter = ["http_method"]
    list_select_related = ["account"]
    search_fields = ["url", "account__email", "account__account_name"]
    autocomplete_fields = ["account"]
    readonly_fields = ["created_at", "updated_at"]
