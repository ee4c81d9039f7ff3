import pytest
from django.utils import timezone

from destinations.models import Destination
from destinations.tests.factories import DestinationFactory
from server.models import Delivery, Event

pytestmark = pytest.mark.django_db

DESTINATIONS = "/admin/destinations/destination/"


def run_action(admin_client, action, destination) -> list[str]:
    response = admin_client.post(
        DESTINATIONS, {"action": action, "_selected_action": [str(destination.pk)]}, follow=True
    )
    return [str(m) for m in response.context["messages"]]


def test_show_secret_shows_the_current_signing_secret_in_the_message_only(admin_client):
    """Staff read the signing secret in the message of the action; the change page never shows it."""
    destination = DestinationFactory(url="https://hooks.example.com/in")
    page = admin_client.get(f"{DESTINATIONS}{destination.pk}/change/").content.decode()
    assert destination.signing_secret not in page
    shown = run_action(admin_client, "show_secret", destination)
    secret = destination.signing_secret
    assert shown == [f"The signing secret of POST https://hooks.example.com/in is {secret}."]


def test_rotate_secret_shows_the_new_one_and_the_old_one_still_signing(admin_client, settings):
    """Rotating gives a new secret, shown once with the previous one and when it stops signing."""
    settings.DATAPUSHER_SECRET_ROTATION_OVERLAP = 3600
    destination = DestinationFactory(url="https://hooks.example.com/in")
    old = destination.signing_secret
    shown = run_action(admin_client, "rotate_secret", destination)
    rotated = Destination.objects.get(pk=destination.pk)
    assert rotated.signing_secret != old
    assert rotated.previous_signing_secret == old
    assert rotated.previous_secret_expires_at > timezone.now()
    expires = rotated.previous_secret_expires_at.isoformat(timespec="seconds")
    assert shown == [
        f"The signing secret of POST https://hooks.example.com/in is {rotated.signing_secret}; "
        f"deliveries are also signed with the previous one, {old}, until {expires}."
    ]


def test_destination_page_links_to_its_account_and_deliveries(admin_client):
    """The destination list links each row's account; its page links to its deliveries."""
    destination = DestinationFactory()
    listed = admin_client.get(DESTINATIONS).content.decode()
    assert f"/admin/accounts/account/{destination.account_id}/change/" in listed
    page = admin_client.get(f"{DESTINATIONS}{destination.pk}/change/").content.decode()
    assert f"/admin/server/delivery/?destination__pk__exact={destination.pk}" in page


def test_a_secret_shown_once_never_travels_in_a_cookie(admin_client):
    """The message that shows a secret is kept in the session: no cookie carries it to the browser."""
    destination = DestinationFactory()
    chosen = {"action": "show_secret", "_selected_action": [destination.pk]}
    response = admin_client.post(DESTINATIONS, chosen)
    assert response.status_code == 302
    assert all(destination.signing_secret not in cookie.value for cookie in response.cookies.values())
    assert "messages" not in response.cookies


def test_resume_enables_the_destination_and_sends_its_paused_deliveries(admin_client, receiver):
    """The Resume action enables a disabled destination, sends its paused delivery and says so."""
    destination = DestinationFactory(url=f"{receiver.url}/in", enabled=False, disabled_reason="gone")
    event = Event.objects.create(account=destination.account, body='{"a": 1}')
    Delivery.objects.create(
        event=event, destination=destination, url=destination.url, http_method="POST", status="paused"
    )
    shown = run_action(admin_client, "resume", destination)
    assert shown == [
        f"POST {receiver.url}/in resumed: 1 paused or held deliveries made due, "
        "1 sent (1 succeeded), 0 pending."
    ]
    destination.refresh_from_db()
    assert (destination.enabled, destination.disabled_reason) == (True, "")
    assert [(r.method, r.path, r.body) for r in receiver.requests] == [("POST", "/in", b'{"a": 1}')]


def test_the_list_filters_by_enabled(admin_client):
    """?enabled__exact=0 lists only the disabled destinations."""
    DestinationFactory(url="https://on.example.com/")
    DestinationFactory(url="https://off.example.com/", enabled=False)
    listed = admin_client.get(DESTINATIONS, {"enabled__exact": "0"}).content.decode()
    assert "off.example.com" in listed
    assert "on.example.com" not in listed


def test_deleting_in_the_admin_fails_the_unsent_deliveries(admin_client):
    """Deleting a destination from its page fails its paused delivery ("destination deleted")."""
    destination = DestinationFactory(enabled=False)
    event = Event.objects.create(account=destination.account, body="{}")
    Delivery.objects.create(
        event=event, destination=destination, url=destination.url, http_method="POST", status="paused"
    )
    response = admin_client.post(f"{DESTINATIONS}{destination.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert list(Delivery.objects.values_list("destination", "status", "error")) == [
        (None, "failed", "destination deleted")
    ]
