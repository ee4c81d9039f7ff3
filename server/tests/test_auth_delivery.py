"""Authenticated destinations against real local servers: Basic, Bearer, and OAuth 2.0 client
credentials with a token endpoint that counts its fetches."""

import base64
import json
import secrets
import threading
import urllib.parse
from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.tests.factories import AccountFactory
from destinations.models import Destination
from destinations.tests.factories import DestinationFactory
from server.models import Delivery
from server.services import delivery as delivery_module
from server.services.credentials import authorizer_for
from server.services.delivery import REAUTHORIZED, delivery_attempt_due, lease_duration
from server.services.log import SKIPPED_OUT_OF_TIME, deliveries_resend
from server.tests.helpers import ASKED, GONE, answer, ingest, pending_delivery

pytestmark = pytest.mark.django_db


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def reply(handler, status: int, body: bytes = b"") -> None:
    handler.send_response(status)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def requiring(expected: str):
    """A receiver's answer: 200 to a request with Authorization `expected`, 401 to any other."""
    return lambda handler: reply(handler, 200 if handler.headers.get("Authorization") == expected else 401)


class TokenServer:
    """The receiver's /token path as an OAuth token endpoint issuing a new token per fetch; /hook
    accepts only the token issued last (a fetch rotates it), and with `refuse_all`, none."""

    def __init__(self, receiver, *, expires_in: float | None = 3600, status: int = 200):
        self.receiver = receiver
        self.expires_in = expires_in
        self.status = status
        self.issued: list[str] = []
        self.refuse_all = False
        receiver.respond = self.respond

    def respond(self, handler) -> None:
        if handler.path == "/token":
            if self.status != 200:
                reply(handler, self.status, b'{"error": "temporarily_unavailable"}')
                return
            self.issued.append(secrets.token_urlsafe(24))
            answer = {"access_token": self.issued[-1], "token_type": "Bearer"}
            if self.expires_in is not None:
                answer["expires_in"] = self.expires_in
            reply(handler, 200, json.dumps(answer).encode())
        else:
            current = self.issued[-1] if self.issued and not self.refuse_all else None
            reply(handler, 200 if handler.headers.get("Authorization") == f"Bearer {current}" else 401)

    def fetches(self) -> list:
        return [r for r in self.receiver.requests if r.path == "/token"]

    def hooks(self) -> list:
        return [r for r in self.receiver.requests if r.path == "/hook"]


def oauth_destination(receiver, client_secret: str, **auth):
    return DestinationFactory(
        account=AccountFactory(),
        url=f"{receiver.url}/hook",
        headers={},
        auth={
            "type": "oauth2_client_credentials",
            "token_url": f"{receiver.url}/token",
            "client_id": "shop client",
            "client_secret": client_secret,
            **auth,
        },
    )


def test_basic_credentials_are_sent_as_basic_auth(client, receiver):
    """A receiver that requires Basic auth gets the user name and password and answers 200."""
    password = secrets.token_urlsafe(16)
    receiver.respond = requiring(basic("ana", password))
    destination = DestinationFactory(
        url=f"{receiver.url}/hook",
        headers={},
        auth={"type": "basic", "username": "ana", "password": password},
    )
    entry = ingest(client, destination.account).json()["deliveries"][0]
    assert (entry["status"], entry["status_code"]) == ("succeeded", 200)
    assert receiver.requests[0].headers["Authorization"] == basic("ana", password)


def test_bearer_token_is_sent_as_bearer_auth(client, receiver):
    """A receiver that requires a Bearer token gets it and answers 200."""
    token = secrets.token_urlsafe(16)
    receiver.respond = requiring(f"Bearer {token}")
    destination = DestinationFactory(
        url=f"{receiver.url}/hook", headers={}, auth={"type": "bearer", "token": token}
    )
    entry = ingest(client, destination.account).json()["deliveries"][0]
    assert (entry["status"], entry["status_code"]) == ("succeeded", 200)


def test_oauth_token_is_fetched_once_and_kept_until_it_expires(client, receiver):
    """Two deliveries, one token fetch (client credentials grant, client auth by HTTP Basic with
    form-encoded parts); both carry that token."""
    client_secret = secrets.token_urlsafe(16) + "/+"
    tokens = TokenServer(receiver, expires_in=3600)
    destination = oauth_destination(receiver, client_secret, scope="read write")
    for _ in range(2):
        assert ingest(client, destination.account).json()["deliveries"][0]["status"] == "succeeded"
    [fetch] = tokens.fetches()
    assert fetch.method == "POST"
    assert fetch.body == b"grant_type=client_credentials&scope=read+write"
    assert fetch.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert fetch.headers["Authorization"] == basic("shop+client", urllib.parse.quote_plus(client_secret))
    assert [r.headers["Authorization"] for r in tokens.hooks()] == [f"Bearer {tokens.issued[0]}"] * 2


@pytest.mark.parametrize("expires_in", ["3600", None, 10**400, -5])
def test_oauth_token_without_a_usable_expires_in_is_kept_until_refused(client, receiver, expires_in):
    """A quoted expires_in counts; one absent, huge or negative keeps the token until a 401."""
    tokens = TokenServer(receiver, expires_in=expires_in)
    destination = oauth_destination(receiver, secrets.token_urlsafe(16))
    for _ in range(2):
        assert ingest(client, destination.account).json()["deliveries"][0]["status"] == "succeeded"
    assert len(tokens.fetches()) == 1


def test_oauth_token_past_its_expiry_margin_is_fetched_again(client, receiver):
    """A token whose expires_in is within the 30 s margin is not kept: each delivery fetches one."""
    tokens = TokenServer(receiver, expires_in=30)
    destination = oauth_destination(receiver, secrets.token_urlsafe(16))
    for _ in range(2):
        assert ingest(client, destination.account).json()["deliveries"][0]["status"] == "succeeded"
    assert len(tokens.fetches()) == 2


def test_a_401_fetches_a_new_token_and_sends_the_delivery_once_more(client, receiver, caplog):
    """The token rotated at the provider: the destination answers 401 to the kept one; a new one is
    fetched and the same delivery sent again with it, two attempts in its log."""
    tokens = TokenServer(receiver, expires_in=3600)
    destination = oauth_destination(receiver, secrets.token_urlsafe(16))
    ingest(client, destination.account)
    tokens.issued.append(secrets.token_urlsafe(24))  # rotated: the kept token is refused now
    entry = ingest(client, destination.account).json()["deliveries"][0]
    assert (entry["status"], entry["status_code"]) == ("succeeded", 200)
    assert len(tokens.fetches()) == 2
    delivery = Delivery.objects.get(delivery_id=entry["delivery_id"])
    attempts = list(delivery.attempts.order_by("id").values_list("status_code", "error"))
    assert attempts == [(401, REAUTHORIZED), (200, "")]
    assert delivery.attempt_count == 2
    kept, _, new = tokens.issued
    assert [r.headers["Authorization"] for r in tokens.hooks()] == [f"Bearer {t}" for t in (kept, kept, new)]
    assert tokens.hooks()[1].headers["webhook-id"] == tokens.hooks()[2].headers["webhook-id"]
    lines = [(r.attempt, r.outcome, r.status_code) for r in caplog.records if r.getMessage() == "attempt"]
    assert lines[-2:] == [(1, "retrying", 401), (2, "succeeded", 200)]


def test_a_second_401_fails_the_delivery_after_one_extra_attempt(client, receiver):
    """A destination refusing every token gets one extra attempt, not more."""
    tokens = TokenServer(receiver, expires_in=3600)
    tokens.refuse_all = True
    destination = oauth_destination(receiver, secrets.token_urlsafe(16))
    entry = ingest(client, destination.account).json()["deliveries"][0]
    assert (entry["status"], entry["status_code"], entry["error"]) == (
        "failed",
        401,
        "destination answered HTTP 401",
    )
    assert (len(tokens.fetches()), len(tokens.hooks())) == (2, 2)


def test_basic_401_is_not_sent_again(client, receiver):
    """Only an OAuth access token is fetched anew on a 401: Basic credentials fail as they are."""
    receiver.respond = requiring("nobody")
    destination = DestinationFactory(
        url=f"{receiver.url}/hook", headers={}, auth={"type": "basic", "username": "ana", "password": "pw"}
    )
    assert ingest(client, destination.account).json()["deliveries"][0]["status"] == "failed"
    assert len(receiver.requests) == 1


def test_token_endpoint_error_is_a_retryable_failure_with_its_reason(client, receiver, settings, published):
    """A token endpoint answering 500 fails the delivery, retryably, quoting the OAuth error code;
    the destination gets nothing."""
    settings.CELERY_BROKER_URL = "redis://broker.invalid:6379/0"
    tokens = TokenServer(receiver, status=500)
    destination = oauth_destination(receiver, secrets.token_urlsafe(16))
    entry = ingest(client, destination.account).json()["deliveries"][0]
    assert (entry["status"], entry["status_code"]) == ("pending", None)
    assert entry["error"] == "token endpoint answered HTTP 500 (temporarily_unavailable)"
    assert Delivery.objects.get().next_attempt_at is not None
    assert tokens.hooks() == []


def test_token_url_refused_by_the_ssrf_guard(client, receiver, settings, published):
    """A token URL resolving to a refused address is never connected to, and the delivery fails for
    good (even with a broker) saying why; the destination (allowed) gets nothing."""
    settings.CELERY_BROKER_URL = "redis://broker.invalid:6379/0"
    settings.DATAPUSHER_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    port = urllib.parse.urlsplit(receiver.url).port
    destination = oauth_destination(
        receiver, secrets.token_urlsafe(16), token_url=f"http://127.0.0.2:{port}/token"
    )
    entry = ingest(client, destination.account).json()["deliveries"][0]
    assert entry["status"] == "failed"
    assert entry["error"] == "token endpoint: destination address not allowed: 127.0.0.2"
    assert receiver.requests == []


def test_silent_token_endpoint_is_bounded_by_the_read_timeout(client, receiver, settings, silent_listener):
    """A token endpoint that accepts and says nothing fails the delivery after the read timeout."""
    settings.DATAPUSHER_READ_TIMEOUT = 0.3
    destination = oauth_destination(
        receiver, secrets.token_urlsafe(16), token_url=f"http://127.0.0.1:{silent_listener.port}/token"
    )
    entry = ingest(client, destination.account).json()["deliveries"][0]
    assert (entry["status"], entry["error"]) == ("failed", "token endpoint: read timed out after 0.3s")
    assert len(silent_listener.accepted) == 1
    assert receiver.requests == []


def test_undecryptable_credentials_fail_the_delivery_unsent(client, receiver, settings, published):
    """Credentials no configured key decrypts fail the delivery with the reason, retryably (a key
    restored recovers it); nothing is sent."""
    settings.CELERY_BROKER_URL = "redis://broker.invalid:6379/0"
    destination = DestinationFactory(
        url=f"{receiver.url}/hook", headers={}, auth={"type": "bearer", "token": secrets.token_urlsafe(16)}
    )
    settings.DATAPUSHER_ENCRYPTION_KEYS = [base64.urlsafe_b64encode(bytes(32)).decode()]
    entry = ingest(client, destination.account).json()["deliveries"][0]
    assert entry["status"] == "pending"
    assert entry["error"] == (
        "credentials unavailable: no key of DATAPUSHER_ENCRYPTION_KEYS decrypts the stored credentials"
    )
    assert receiver.requests == []


def test_concurrent_sends_fetch_the_token_once(receiver):
    """Eight threads wanting a token for one destination at once cause one fetch; all get its token."""
    tokens = TokenServer(receiver, expires_in=3600)
    fetching = threading.Event()
    serve = tokens.respond

    def slow_token_endpoint(handler):
        fetching.set()
        # Without the lock the other threads would fetch meanwhile: hold the answer until they all
        # had their chance (they are started once this fetch has begun).
        release.wait(5)
        serve(handler)

    receiver.respond = slow_token_endpoint
    authorizer = authorizer_for(destination=oauth_destination(receiver, secrets.token_urlsafe(16)))
    release = threading.Event()
    headers: list[dict] = []
    first = threading.Thread(target=lambda: headers.append(authorizer.headers()))
    first.start()
    assert fetching.wait(5)
    others = [threading.Thread(target=lambda: headers.append(authorizer.headers())) for _ in range(7)]
    for thread in others:
        thread.start()
    waiting = threading.Timer(0.5, release.set)  # the others are blocked on the lock, or fetching
    waiting.start()
    for thread in [first, *others]:
        thread.join(10)
    assert len(tokens.fetches()) == 1
    assert headers == [{"Authorization": f"Bearer {tokens.issued[0]}"}] * 8


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (200, b"<html>", "token endpoint answered without a usable access_token"),
        (200, b'{"token_type": "Bearer"}', "token endpoint answered without a usable access_token"),
        (200, b'{"access_token": "a\\nb"}', "token endpoint answered without a usable access_token"),
        (
            200,
            b'{"access_token": "t", "token_type": "mac"}',
            "token endpoint answered token_type 'mac', not Bearer",
        ),
        (
            401,
            b'{"error": "invalid_client", "error_description": "secret s3cr3t"}',
            "token endpoint answered HTTP 401 (invalid_client)",
        ),
        (302, b"", "token endpoint answered HTTP 302"),
    ],
)
def test_unusable_token_answers_fail_the_delivery_unsent(client, receiver, status, body, error):
    """A token endpoint's answer without a usable Bearer token (or a redirect, not followed) fails
    the delivery with a reason that quotes nothing but the OAuth error code; the hook gets nothing."""

    def token_endpoint(handler):
        if handler.path == "/token":
            handler.send_response(status)
            handler.send_header("Location", f"{receiver.url}/elsewhere")
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body)
        else:
            reply(handler, 200)

    receiver.respond = token_endpoint
    destination = oauth_destination(receiver, secrets.token_urlsafe(16))
    entry = ingest(client, destination.account).json()["deliveries"][0]
    assert (entry["status"], entry["error"]) == ("failed", error)
    assert [r.path for r in receiver.requests] == ["/token"]


def test_a_401_whose_resend_another_sender_holds_stays_pending_a_minute(client, receiver, monkeypatch):
    """When the resend cannot lease the delivery, it is left pending, due a minute later."""
    tokens = TokenServer(receiver, expires_in=3600)
    tokens.refuse_all = True
    monkeypatch.setattr("server.services.delivery._lease", lambda **kwargs: [])
    destination = oauth_destination(receiver, secrets.token_urlsafe(16))
    entry = ingest(client, destination.account).json()["deliveries"][0]
    assert (entry["status"], entry["error"]) == ("pending", REAUTHORIZED)
    delivery = Delivery.objects.get()
    assert delivery.next_attempt_at - delivery.processed_at == timedelta(seconds=60)
    assert delivery.lease_id is None


def test_leases_outlast_a_token_fetch_and_a_send(settings):
    """A lease lasts a deadline, the 1 s grace and 10 s more; two deadlines where a token may be fetched."""
    settings.DATAPUSHER_CONNECT_TIMEOUT, settings.DATAPUSHER_READ_TIMEOUT = 5, 10
    assert (lease_duration(), lease_duration(fetches_token=True)) == (
        timedelta(seconds=26),
        timedelta(seconds=41),
    )


def test_an_oauth_delivery_is_sent_under_the_longer_lease(client, receiver, monkeypatch):
    """When an OAuth destination's delivery is sent, its lease runs two deadlines; a plain one's, one."""
    TokenServer(receiver, expires_in=3600)
    destination = oauth_destination(receiver, secrets.token_urlsafe(16))
    DestinationFactory(account=destination.account, url=f"{receiver.url}/plain", headers={})
    leases = []
    fan_out = delivery_module._fan_out

    def observed(requests):
        now = timezone.now()
        leases.extend((d.destination_id, d.lease_expires_at - now) for d in Delivery.objects.order_by("id"))
        return fan_out(requests)

    monkeypatch.setattr(delivery_module, "_fan_out", observed)
    ingest(client, destination.account)
    [(oauth_id, oauth_lease), (_, plain_lease)] = leases
    assert oauth_id == destination.pk
    assert timedelta(seconds=40) < oauth_lease <= timedelta(seconds=41)
    assert timedelta(seconds=25) < plain_lease <= timedelta(seconds=26)


def test_an_unexpected_error_authenticating_fails_that_delivery_only(client, receiver, monkeypatch):
    """A bug reached while authenticating one destination fails its delivery; the others are sent."""

    def broken(self):
        raise RuntimeError("boom")

    monkeypatch.setattr("server.services.credentials.Authorizer.headers", broken)
    destination = DestinationFactory(
        url=f"{receiver.url}/hook", headers={}, auth={"type": "bearer", "token": "t"}
    )
    DestinationFactory(account=destination.account, url=f"{receiver.url}/plain", headers={})
    entries = ingest(client, destination.account).json()["deliveries"]
    assert [(e["status"], e["error"]) for e in entries] == [
        ("failed", "unexpected error: RuntimeError"),
        ("succeeded", None),
    ]
    assert [r.path for r in receiver.requests] == ["/plain"]


def test_changed_credentials_fetch_a_new_token(client, receiver, api_client):
    """A token is kept for the credentials it was fetched with: after an update, a new one is fetched."""
    tokens = TokenServer(receiver, expires_in=3600)
    client_secret = secrets.token_urlsafe(16)
    destination = oauth_destination(receiver, client_secret)
    ingest(client, destination.account)
    auth = {**destination.auth, "client_secret": client_secret, "scope": "write"}
    assert (
        api_client.patch(f"/api/destinations/{destination.pk}/", {"auth": auth}, format="json").status_code
        == 200
    )
    ingest(client, destination.account)
    assert [r.body for r in tokens.fetches()] == [
        b"grant_type=client_credentials",
        b"grant_type=client_credentials&scope=write",
    ]


def test_a_workers_attempt_fetches_a_new_token_on_a_401_too(receiver):
    """The worker's step (queue mode, retries) also sends once more with a new token after a 401."""
    tokens = TokenServer(receiver, expires_in=3600)
    destination = oauth_destination(receiver, secrets.token_urlsafe(16))
    deliveries = [pending_delivery(destination=destination) for _ in range(2)]
    delivery_attempt_due(delivery_pk=deliveries[0].pk)
    tokens.issued.append(secrets.token_urlsafe(24))  # rotated: the kept token is refused now
    delivery_attempt_due(delivery_pk=deliveries[1].pk)
    statuses = [list(d.attempts.order_by("id").values_list("status_code", flat=True)) for d in deliveries]
    assert statuses == [[200], [401, 200]]
    assert Delivery.objects.get(pk=deliveries[1].pk).status == Delivery.Status.SUCCEEDED
    assert len(tokens.fetches()) == 2


def test_operator_resend_keeps_time_for_token_fetches(receiver, settings, silent_listener):
    """Sent from the admin without a broker, a group with OAuth deliveries is started only while a
    token fetch, the send and a second round after a 401 could all end in the action's time."""
    settings.DATAPUSHER_ADMIN_SEND_CONCURRENCY = 2
    settings.DATAPUSHER_ADMIN_ACTION_SECONDS = 4.0  # a plain group (0.6 s + 1 s) would fit twice
    settings.DATAPUSHER_CONNECT_TIMEOUT = settings.DATAPUSHER_READ_TIMEOUT = 0.3
    token_url = f"http://127.0.0.1:{silent_listener.port}/token"
    destination = oauth_destination(receiver, secrets.token_urlsafe(16), token_url=token_url)
    deliveries = [pending_delivery(destination=destination, status="failed") for _ in range(4)]
    resend = deliveries_resend(deliveries=Delivery.objects.filter(pk__in=[d.pk for d in deliveries]))
    assert (len(resend.taken), dict(resend.skipped)) == (2, {SKIPPED_OUT_OF_TIME: 2})
    assert receiver.requests == []


# --- where OAuth credentials meet pause, resume and the receiver in control --------------------------


def test_a_disabled_oauth_destination_fetches_no_token(client, receiver):
    """An ingest to a disabled destination with OAuth credentials is paused: no token, nothing sent."""
    tokens = TokenServer(receiver)
    destination = oauth_destination(receiver, secrets.token_urlsafe(16))
    Destination.objects.filter(pk=destination.pk).update(enabled=False, disabled_reason=GONE)
    entry = ingest(client, destination.account).json()["deliveries"][0]
    assert (entry["status"], entry["status_code"]) == ("paused", None)
    assert Delivery.objects.get().error == f"the destination is disabled ({GONE})"
    assert (tokens.fetches(), receiver.requests) == ([], [])


def test_a_410_from_an_oauth_destination_disables_it(client, receiver):
    """Sent with a fetched token and answered 410: failed for good, the destination disabled saying so."""
    tokens = TokenServer(receiver)
    gone = tokens.respond
    receiver.respond = lambda handler: gone(handler) if handler.path == "/token" else reply(handler, 410)
    destination = oauth_destination(receiver, secrets.token_urlsafe(16))
    entry = ingest(client, destination.account).json()["deliveries"][0]
    assert (entry["status"], entry["status_code"]) == ("failed", 410)
    destination.refresh_from_db()
    assert (destination.enabled, destination.disabled_reason) == (False, GONE)
    assert [r.headers["Authorization"] for r in tokens.hooks()] == [f"Bearer {tokens.issued[0]}"]
    assert len(tokens.fetches()) == 1


def test_a_401_that_disables_the_oauth_destination_is_not_sent_again(client, receiver):
    """A 401 with `webhook-delivery: disable`: no new token, no second send; failed, destination off."""
    tokens = TokenServer(receiver)
    issue, refuse = tokens.respond, answer(401, headers={"webhook-delivery": "disable"})
    receiver.respond = lambda handler: (issue if handler.path == "/token" else refuse)(handler)
    destination = oauth_destination(receiver, secrets.token_urlsafe(16))
    entry = ingest(client, destination.account).json()["deliveries"][0]
    assert (entry["status"], entry["status_code"]) == ("failed", 401)
    destination.refresh_from_db()
    assert (destination.enabled, destination.disabled_reason) == (False, ASKED)
    assert (len(tokens.fetches()), len(tokens.hooks())) == (1, 1)
    assert list(Delivery.objects.get().attempts.values_list("status_code", flat=True)) == [401]


def test_a_throttled_answer_after_a_401_refetch_spends_no_attempt(client, receiver, settings, published):
    """With a broker: 401 (counted), a new token, then 429 Retry-After: 30 to the resend: pending,
    due 30 s later, one attempt counted of the two logged."""
    settings.CELERY_BROKER_URL = "redis://broker.invalid:6379/0"
    tokens = TokenServer(receiver)
    issue, throttle = tokens.respond, answer(429, headers={"Retry-After": "30"})

    def respond(handler):
        if handler.path == "/token":
            issue(handler)
        elif len(tokens.issued) == 1:
            reply(handler, 401)
        else:
            throttle(handler)

    receiver.respond = respond
    destination = oauth_destination(receiver, secrets.token_urlsafe(16))
    entry = ingest(client, destination.account).json()["deliveries"][0]
    assert (entry["status"], entry["status_code"]) == ("pending", 429)
    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.attempt_count) == ("pending", 1)
    assert delivery.next_attempt_at - delivery.processed_at == timedelta(seconds=30)
    assert list(delivery.attempts.order_by("id").values_list("status_code", "error")) == [
        (401, REAUTHORIZED),
        (429, "destination answered HTTP 429"),
    ]
    assert [r.headers["Authorization"] for r in tokens.hooks()] == [f"Bearer {t}" for t in tokens.issued]


def test_a_401_resend_to_a_destination_disabled_meanwhile_is_paused(receiver, settings):
    """Two deliveries to one OAuth destination sent together: one answered 410, the other 401. The
    destination is off by the time of the resend, so the 401's delivery is paused, not sent again."""
    settings.DATAPUSHER_ADMIN_SEND_CONCURRENCY = 2
    tokens = TokenServer(receiver)
    issue = tokens.respond
    destination = oauth_destination(receiver, secrets.token_urlsafe(16))
    gone, refused = (pending_delivery(destination=destination, status="failed") for _ in range(2))

    def respond(handler):
        if handler.path == "/token":
            issue(handler)
        else:
            reply(handler, 410 if handler.headers["webhook-id"] == str(gone.delivery_id) else 401)

    receiver.respond = respond
    resend = deliveries_resend(deliveries=Delivery.objects.filter(pk__in=[gone.pk, refused.pk]))
    assert len(resend.taken) == 2
    refused.refresh_from_db()
    assert (refused.status, refused.error) == ("paused", f"the destination is disabled ({GONE})")
    assert list(refused.attempts.values_list("status_code", flat=True)) == [401]
    assert (len(tokens.fetches()), len(tokens.hooks())) == (1, 2)
