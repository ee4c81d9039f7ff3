"""Standard Webhooks signing, checked with the spec's published Python verifier."""

import re
import time
from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from accounts.tests.factories import AccountFactory
from destinations.models import Destination
from destinations.signing import sign
from destinations.tests.factories import DestinationFactory
from server.models import Delivery
from server.tests.helpers import ingest

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(("method", "signed_body"), [("POST", b'{"a": [1, "\xc3\xa9"]}'), ("PUT", b"{}")])
def test_body_deliveries_verify_with_the_reference_library(client, receiver, method, signed_body):
    """POST/PUT: the received body with the webhook-* headers passes Webhook(secret).verify()."""
    destination = DestinationFactory(account=AccountFactory(), url=receiver.url, http_method=method)
    ingest(client, destination.account, signed_body)
    [received] = receiver.requests
    assert received.body == signed_body
    Webhook(destination.signing_secret).verify(received.body, received.headers)


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_query_deliveries_sign_the_query_string_as_sent(client, receiver, method):
    """GET/DELETE carry the data in the query string: the signature covers it exactly as received
    (the URL's own query first), so a receiver can trust the parameters; not an empty body."""
    destination = DestinationFactory(
        account=AccountFactory(), url=f"{receiver.url}/?source=x", http_method=method
    )
    ingest(client, destination.account, '{"a": 1, "b": "é &", "c": {"d": [1]}}'.encode())
    [received] = receiver.requests
    query = received.path.split("?", 1)[1].encode()
    assert query == b"source=x&a=1&b=%C3%A9+%26&c=%7B%22d%22%3A%5B1%5D%7D"
    Webhook(destination.signing_secret).verify(query, received.headers, json_parse=False)
    for forged in (b"", b"source=x&a=2&b=%C3%A9+%26&c=%7B%22d%22%3A%5B1%5D%7D"):
        with pytest.raises(WebhookVerificationError):
            Webhook(destination.signing_secret).verify(forged, received.headers, json_parse=False)


def test_headers_name_the_delivery_and_the_time(client, receiver):
    """webhook-id is the delivery's id, webhook-timestamp is now in unix seconds, the signature is v1."""
    destination = DestinationFactory(account=AccountFactory(), url=receiver.url)
    ingest(client, destination.account, b"{}")
    [received] = receiver.requests
    assert received.headers["webhook-id"] == str(Delivery.objects.get().delivery_id)
    assert abs(int(received.headers["webhook-timestamp"]) - time.time()) < 5
    assert re.fullmatch(r"v1,[A-Za-z0-9+/]{43}=", received.headers["webhook-signature"])


def test_tampered_body_or_other_secret_fails_verification(client, receiver):
    """The signature binds the body and the destination's own secret."""
    destination = DestinationFactory(account=AccountFactory(), url=receiver.url)
    other = DestinationFactory(account=destination.account, url=f"{receiver.url}/other")
    ingest(client, destination.account, b'{"amount": 1}')
    received = next(r for r in receiver.requests if r.path == "/")
    with pytest.raises(WebhookVerificationError):
        Webhook(destination.signing_secret).verify(b'{"amount": 1000}', received.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(other.signing_secret).verify(received.body, received.headers)


def test_each_destination_gets_its_own_secret():
    """Secrets are random per destination: whsec_ and 32 random bytes in base64."""
    secrets = {DestinationFactory().signing_secret for _ in range(3)}
    assert len(secrets) == 3
    assert all(re.fullmatch(r"whsec_[A-Za-z0-9+/]{43}=", secret) for secret in secrets)


def test_rotate_secret_signs_with_both_secrets_until_the_overlap_ends(client, api_client, receiver):
    """rotate-secret answers the new secret; deliveries then carry two signatures (`v1,<new> v1,<old>`),
    each verifying with its secret, until the overlap ends; then the new one alone."""
    destination = DestinationFactory(account=AccountFactory(), url=receiver.url)
    old = destination.signing_secret
    response = api_client.post(f"/api/destinations/{destination.id}/rotate-secret/")
    assert response.status_code == 200
    new = response.json()["signing_secret"]
    assert new != old
    ingest(client, destination.account, b"{}")
    during = receiver.requests[-1]
    signatures = during.headers["webhook-signature"].split(" ")
    assert [s[:3] for s in signatures] == ["v1,", "v1,"]
    for secret in (new, old):
        Webhook(secret).verify(during.body, during.headers)
    assert signatures[0] == sign(
        secret=new,
        message_id=during.headers["webhook-id"],
        timestamp=int(during.headers["webhook-timestamp"]),
        body=during.body,
    )
    Destination.objects.filter(pk=destination.pk).update(previous_secret_expires_at=timezone.now())
    ingest(client, destination.account, b"{}")
    after = receiver.requests[-1]
    assert len(after.headers["webhook-signature"].split(" ")) == 1
    Webhook(new).verify(after.body, after.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(old).verify(after.body, after.headers)


@override_settings(DATAPUSHER_SECRET_ROTATION_OVERLAP=3600)
def test_the_overlap_follows_the_setting(api_client):
    """The previous secret's end is DATAPUSHER_SECRET_ROTATION_OVERLAP seconds after the rotation."""
    destination = DestinationFactory()
    api_client.post(f"/api/destinations/{destination.id}/rotate-secret/")
    destination.refresh_from_db()
    assert abs(destination.previous_secret_expires_at - (timezone.now() + timedelta(hours=1))) < timedelta(
        minutes=1
    )


def test_signing_secret_is_read_only(api_client):
    """A client cannot choose the secret."""
    destination = DestinationFactory()
    response = api_client.patch(
        f"/api/destinations/{destination.id}/", {"signing_secret": "whsec_Y2hvc2Vu"}, format="json"
    )
    assert response.status_code == 200
    destination.refresh_from_db()
    assert destination.signing_secret != "whsec_Y2hvc2Vu"


@pytest.mark.parametrize("name", ["webhook-id", "Webhook-Signature", "WEBHOOK-TIMESTAMP"])
def test_signing_headers_cannot_be_configured(api_client, name):
    """A destination cannot override the headers Data Pusher signs with."""
    account = AccountFactory()
    response = api_client.post(
        "/api/destinations/",
        {
            "account": str(account.account_id),
            "url": "https://h.example.com/",
            "http_method": "POST",
            "headers": {name: "x"},
        },
        format="json",
    )
    assert response.status_code == 400
    assert response.json() == {"headers": [f"{name!r} is set by Data Pusher and cannot be configured."]}
