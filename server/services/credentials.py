"""How a delivery's request authenticates (the destination's `auth`): Basic, Bearer, or an OAuth 2.0
access token got with the client credentials grant (RFC 6749 4.4).

Access tokens are fetched from the destination's token URL through server.http (its SSRF guard,
timeouts and size cap), kept in this process per destination (and per credentials: changed ones
never reuse a token) until TOKEN_EXPIRY_MARGIN seconds before `expires_in` (without it, until a
destination refuses it), and fetched by one thread at a time per destination: concurrent sends wait
for that fetch and use its token. A 401 from the destination drops the token it refused.
"""

import base64
import hashlib
import json
import re
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from destinations.auth import AuthType, CredentialsUnavailable
from destinations.models import Destination
from server import http

TOKEN_EXPIRY_MARGIN = 30.0
# RFC 6749 5.2 error codes: quoted in a delivery's error (nothing else of the answer is).
_ERROR_CODE = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]{1,64}")
# What may follow "Bearer " in a header: visible ASCII (RFC 6750's b64token and more, never a line break).
_HEADER_SAFE = re.compile(r"[!-~]+")


class CredentialsError(http.OutboundError):
    """The request could not be authenticated (no key decrypts the credentials, or the token
    endpoint gave no usable token); nothing was sent to the destination. Retried as a failed send."""


@dataclass(frozen=True)
class _Token:
    value: str
    expires_at: float | None  # time.monotonic(); None: until a destination refuses it
    credentials: str = field(default="", repr=False)  # the fingerprint of those it was fetched with

    def usable(self, *, credentials: str) -> bool:
        fresh = self.expires_at is None or self.expires_at > time.monotonic()
        return fresh and self.credentials == credentials


# By destination id: one entry and one lock per destination this process has sent to.
_tokens: dict[int, _Token] = {}
_locks: dict[int, threading.Lock] = {}
_locks_lock = threading.Lock()


def _lock(key: int) -> threading.Lock:
    with _locks_lock:
        return _locks.setdefault(key, threading.Lock())


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _token_fetch(credentials: dict[str, str], fingerprint: str) -> _Token:
    """A new access token from the token URL. Raises CredentialsError."""
    form = {"grant_type": "client_credentials"}
    if credentials.get("scope"):
        form["scope"] = credentials["scope"]
    # Client authentication with HTTP Basic, each part form-encoded first (RFC 6749 2.3.1).
    client_id, client_secret = (
        urllib.parse.quote_plus(credentials[n]) for n in ("client_id", "client_secret")
    )
    try:
        response = http.send(
            method="POST",
            url=credentials["token_url"],
            headers={
                "Authorization": _basic(client_id, client_secret),
                "Content-Type": "application/x-www-form-urlencoded",
                "Accept": "application/json",
            },
            body=urllib.parse.urlencode(form).encode(),
        )
    except http.OutboundError as err:
        error = CredentialsError(f"token endpoint: {err}")
        error.retryable = err.retryable
        raise error from err
    try:
        answer: Any = json.loads(response.body)
    except ValueError:
        answer = None
    answer = answer if isinstance(answer, dict) else {}
    if not response.succeeded:
        code = answer.get("error")
        quoted = f" ({code})" if isinstance(code, str) and _ERROR_CODE.fullmatch(code) else ""
        raise CredentialsError(f"token endpoint answered HTTP {response.status_code}{quoted}")
    token, token_type, expires_in = (answer.get(n) for n in ("access_token", "token_type", "expires_in"))
    if not isinstance(token, str) or not _HEADER_SAFE.fullmatch(token):
        raise CredentialsError("token endpoint answered without a usable access_token")
    if isinstance(token_type, str) and token_type.lower() != "bearer":
        raise CredentialsError(f"token endpoint answered token_type {token_type[:20]!r}, not Bearer")
    if isinstance(expires_in, str) and expires_in.isdecimal():  # some servers quote it
        expires_in = int(expires_in)
    if isinstance(expires_in, int | float) and not isinstance(expires_in, bool) and 0 <= expires_in < 2**31:
        return _Token(token, time.monotonic() + expires_in - TOKEN_EXPIRY_MARGIN, fingerprint)
    return _Token(token, None, fingerprint)  # absent or unusable: kept until a destination refuses it


@dataclass(frozen=True)
class Authorizer:
    """What one delivery's request is authenticated with, made on the caller's thread (the stored
    secret decrypted there) and used on the sending thread (where a token may be fetched)."""

    auth_type: str
    credentials: dict[str, str] = field(repr=False)
    destination_pk: int
    fetches_token: bool  # a send may first fetch an access token (one more request's deadline)
    unavailable: str = ""  # why the credentials cannot be read, if they cannot

    def _fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.credentials, sort_keys=True).encode()).hexdigest()

    def headers(self) -> dict[str, str]:
        """The headers that authenticate the request. Raises CredentialsError."""
        if self.unavailable:
            raise CredentialsError(f"credentials unavailable: {self.unavailable}")
        if self.auth_type == AuthType.BASIC:
            return {"Authorization": _basic(self.credentials["username"], self.credentials["password"])}
        if self.auth_type == AuthType.BEARER:
            return {"Authorization": f"Bearer {self.credentials['token']}"}
        key, fingerprint = self.destination_pk, self._fingerprint()
        with _lock(key):
            token = _tokens.get(key)
            if token is None or not token.usable(credentials=fingerprint):
                token = _tokens[key] = _token_fetch(self.credentials, fingerprint)
        return {"Authorization": f"Bearer {token.value}"}

    def refused(self, headers: dict[str, str]) -> None:
        """The destination answered 401 to a request sent with `headers`: an access token it
        refused is dropped (unless another send has replaced it already), so the next send fetches."""
        if not self.fetches_token:
            return
        key = self.destination_pk
        with _lock(key):
            token = _tokens.get(key)
            if token is not None and headers.get("Authorization") == f"Bearer {token.value}":
                del _tokens[key]


def authorizer_for(*, destination: Destination) -> Authorizer | None:
    """The destination's Authorizer, or None when its requests carry no credentials."""
    if destination.auth_type == AuthType.NONE:
        return None
    try:
        credentials, unavailable = destination.credentials(), ""
    except CredentialsUnavailable as err:
        credentials, unavailable = {}, str(err)
    return Authorizer(
        auth_type=destination.auth_type,
        credentials=credentials,
        destination_pk=destination.pk,
        fetches_token=destination.auth_fetches_token,
        unavailable=unavailable,
    )
