from django.contrib import admin, messages
from django.http import HttpRequest
from django.utils import timezone

from accounts.admin import LIST_AND_PAGE, AuthoredAdmin, autocomplete_filter, change_link, changelist_link
from destinations.addresses import url_without_credentials
from destinations.auth import SECRET_FIELD
from destinations.models import Destination
from destinations.selectors import destination_circuit
from destinations.serializers import MASKED
from destinations.services import destination_rotate_secret


def _show_signing_secrets(request: HttpRequest, destination: Destination) -> None:
    """The destination's signing secret (and the one it replaced while that still signs), in the
    message of this answer only: the change page and the lists never show them."""
    message = f"The signing secret of {destination} is {destination.signing_secret}"
    previous = destination.signing_secrets(now=timezone.now())[1:]
    if previous:
        expires = destination.previous_secret_expires_at.isoformat(timespec="seconds")
        message += f"; deliveries are also signed with the previous one, {previous[0]}, until {expires}"
    messages.warning(request, message + ".")


@admin.register(Destination)
class DestinationAdmin(AuthoredAdmin):
    list_display = [
        "target",
        "account_link",
        "enabled",
        "disabled_reason",
        "circuit",
        "created_at",
        "deliveries",
    ]
    list_display_links = ["target"]
    list_filter = ["enabled", "circuit_state", "http_method", autocomplete_filter("account", "account")]
    list_select_related = ["account"]
    search_fields = ["url", "account__email", "account__account_name"]
    autocomplete_fields = ["account"]
    readonly_fields = [
        "authentication",
        "deliveries",
        "disabled_reason",
        "circuit",
        "created_at",
        "updated_at",
    ]
    actions = ["rotate_secret", "show_secret"]

    @admin.display(description="destination", ordering="url")
    def target(self, destination: Destination) -> str:
        return f"{destination.http_method} {url_without_credentials(destination.url)}"

    @admin.display(description="account", ordering="account__account_name")
    def account_link(self, destination: Destination) -> str:
        return change_link(destination.account, destination.account.account_name)

    @admin.display(description="auth")
    def authentication(self, destination: Destination) -> str:
        """The type and its readable fields, the secret masked; changed through the API only."""
        shown = {**destination.auth}
        if secret_field := SECRET_FIELD.get(destination.auth_type):
            shown[secret_field] = MASKED
        return ", ".join(f"{name}: {value}" for name, value in shown.items())

    @admin.display(description="circuit", ordering="circuit_state")
    def circuit(self, destination: Destination) -> str:
        """The breaker's state, its failures in a row, and the next probe while not closed."""
        circuit = destination_circuit(destination=destination)
        shown = f"{circuit.state}, {circuit.consecutive_failures} failures in a row"
        if circuit.next_probe_at is not None:
            shown += f", next probe {circuit.next_probe_at.isoformat(timespec='seconds')}"
        return shown

    @admin.display(description="delivery log")
    def deliveries(self, destination: Destination) -> str:
        if destination.pk is None:
            return "-"
        return changelist_link("server.delivery", "deliveries", destination__pk__exact=destination.pk)

    @admin.action(description="Show the signing secret", permissions=["change"], location=LIST_AND_PAGE)
    def show_secret(self, request: HttpRequest, queryset) -> None:
        for destination in queryset:
            _show_signing_secrets(request, destination)

    @admin.action(
        description="Rotate the signing secret (the old one signs for the overlap)",
        permissions=["change"],
        location=LIST_AND_PAGE,
    )
    def rotate_secret(self, request: HttpRequest, queryset) -> None:
        for destination in queryset:
            rotated = destination_rotate_secret(destination=destination, by=request.user)
            _show_signing_secrets(request, rotated)
