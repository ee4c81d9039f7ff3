"""All outbound HTTP to destinations goes through here; nothing else imports `requests`.

One set of connection pools (requests adapters on one Session, called directly) with:
- a User-Agent naming the product, and no proxies or .netrc credentials from the environment;
- the connect/read timeouts from settings on every request, plus an overall deadline that a
  destination dripping its answer byte by byte cannot stretch (one thread per process keeps the
  deadlines of all requests in flight, and shuts the socket of any request past its own);
- at most DATAPUSHER_MAX_QUERY_BYTES of query string: a longer one is refused before anything is
  sent, since servers answer it with 414 however often it is retried;
- redirects never followed, and at most DATAPUSHER_RESPONSE_MAX_BYTES of a body read;
- the SSRF guard: the address actually connected to is checked at connect time, after DNS, so
  hostnames resolving to private addresses and DNS rebinding are refused, not only literal IPs;
- `requests`/urllib3 errors wrapped in the product's own exception types, classified once.
"""

import contextlib
import email.utils
import heapq
import ipaddress
import itertools
import logging
import os
import re
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import requests
from django.conf import settings
from requests import PreparedRequest
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from requests.utils import requote_uri
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError

from datapusher import __version__
from destinations import addresses
from destinations.addresses import IPAddress, address_allowed

USER_AGENT = f"DataPusher/{__version__}"
# A Data Pusher extension to Standard Webhooks: a receiver answering with this header set to
# `disable` is sent nothing more until its destination is resumed (docs/delivery.md).
DELIVERY_CONTROL_HEADER = "webhook-delivery"
logger = logging.getLogger(__name__)


class OutboundError(Exception):
    """A request to a destination that produced no usable HTTP response."""

    retryable = True


class OutboundTimeout(OutboundError):
    pass


class OutboundConnectionError(OutboundError):
    pass


class AddressNotAllowed(OutboundError):
    """The destination resolves only to addresses the SSRF guard refuses. Never retried."""

    retryable = False


class QueryTooLong(OutboundError):
    """The query string would exceed DATAPUSHER_MAX_QUERY_BYTES; nothing was sent. Never retried:
    the event's data does not get shorter."""

    retryable = False


@dataclass(frozen=True)
class OutboundResponse:
    status_code: int
    body: bytes  # at most DATAPUSHER_RESPONSE_MAX_BYTES
    retry_after: float | None = None  # seconds, from a Retry-After header
    # The receiver asked, with `webhook-delivery: disable`, to be sent nothing more.
    disable_requested: bool = False

    @property
    def succeeded(self) -> bool:
        return 200 <= self.status_code < 300

    @property
    def retryable(self) -> bool:
        """5xx and 429 may pass; other 4xx and 3xx (redirects are not followed) will not."""
        return self.status_code >= 500 or self.status_code == 429

    @property
    def disables(self) -> str | None:
        """Why this answer turns the destination off (410 Gone, or the disable header), else None."""
        if self.status_code == 410:
            return "the destination answered 410 Gone"
        if self.disable_requested:
            return f"the destination asked to be disabled ({DELIVERY_CONTROL_HEADER}: disable)"
        return None

    @property
    def throttled(self) -> bool:
        """A 429 or 503 saying when to come back: that wait replaces the retry schedule's, and the
        attempt does not count against the schedule."""
        return self.status_code in (429, 503) and self.retry_after is not None


# --- SSRF guard ----------------------------------------------------------------------------------


def _resolve(host: str, port: int) -> list[IPAddress]:
    infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos))


class _GuardedConnectionMixin:
    """Connects only to vetted addresses, and puts every socket under the request's watchdog."""

    def _new_conn(self) -> socket.socket:
        host = self._dns_host
        try:
            addresses = _resolve(host, self.port)
        except socket.gaierror as err:
            raise NameResolutionError(self.host, self, err) from err
        allowed = [address for address in addresses if address_allowed(address)]
        if not allowed:
            refused = ", ".join(str(address) for address in addresses)
            raise AddressNotAllowed(f"destination address not allowed: {refused}")
        # Connect to the address just checked: no second lookup that DNS rebinding could answer
        # differently. TLS still verifies the certificate against the hostname (self.host).
        last_error: Exception | None = None
        for address in allowed:
            self._dns_host = str(address)
            try:
                sock = super()._new_conn()
            except ConnectTimeoutError as err:  # also NewConnectionError (refused, unreachable)
                last_error = err
                continue
            finally:
                self._dns_host = host
            # A lookup or a connect the watchdog could not interrupt may end after the deadline:
            # then the caller has given up and recorded a timeout, and this socket is shut at once,
            # before a byte is written.
            _watch(sock)
            return sock
        raise last_error

    def request(self, *args, **kwargs):
        _watch(self.sock)  # a kept-alive connection's socket (a new one is watched as it connects)
        return super().request(*args, **kwargs)


def _watch(sock: socket.socket | None) -> None:
    watchdog = getattr(_current, "watchdog", None)
    if watchdog is not None and sock is not None:
        watchdog.watch(sock)


class _GuardedHTTPConnection(_GuardedConnectionMixin, HTTPConnection):
    pass


class _GuardedHTTPSConnection(_GuardedConnectionMixin, HTTPSConnection):
    pass


class _GuardedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _GuardedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


class _GuardedAdapter(HTTPAdapter):
    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _GuardedHTTPConnectionPool,
            "https": _GuardedHTTPSConnectionPool,
        }


# --- Overall deadline -----------------------------------------------------------------------------

_current = threading.local()


class _Watchdog:
    """One request's overall deadline: when it passes, the request's socket is shut down, ending
    any blocked read. Fired by the process's deadline thread (_deadlines)."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.fired = False
        self.finished = False
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> "_Watchdog":
        _current.watchdog = self
        _deadlines.add(self)
        return self

    def __exit__(self, *exc_info) -> None:
        self.finish()
        _current.watchdog = None

    def finish(self) -> None:
        """The request needs its socket no more: a deadline passing from now on leaves it alone.
        Called before a read-through connection goes back to the pool (where another request may
        take it at once), and again, harmlessly, on leaving."""
        with self._lock:
            self.finished = True
            self._sock = None

    def watch(self, sock: socket.socket | None) -> None:
        with self._lock:
            self._sock = sock
            if self.fired:
                self._shutdown()

    def fire(self) -> None:
        with self._lock:
            if not self.finished:
                self.fired = True
                self._shutdown()

    def _shutdown(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):  # already closed
                self._sock.shutdown(socket.SHUT_RDWR)


class _Deadlines:
    """The deadlines of all requests in flight in this process, and the one daemon thread that
    fires each watchdog whose deadline passes.

    One thread for all, started when first needed: a timer thread per request cost a thread's
    creation and dozens of context switches on every send. Entering is a heap push that wakes the
    thread only when it brings the earliest deadline forward; leaving only marks the watchdog
    finished, and the thread drops finished entries as they reach the top of the heap, so the heap
    holds at most the requests begun within one deadline (15 s of them by default).
    """

    def __init__(self) -> None:
        self._start_afresh()
        # A forked child (gunicorn forks its workers after import) has none of its parent's threads,
        # and the lock may have been held by one of them at the fork: it starts its own.
        os.register_at_fork(after_in_child=self._start_afresh)

    def _start_afresh(self) -> None:
        self._condition = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, _Watchdog]] = []
        self._order = itertools.count()  # equal deadlines never compare their watchdogs
        self._thread: threading.Thread | None = None

    def add(self, watchdog: _Watchdog) -> None:
        due = time.monotonic() + watchdog.seconds
        with self._condition:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="datapusher-deadlines", daemon=True)
                self._thread.start()
            heapq.heappush(self._heap, (due, next(self._order), watchdog))
            if self._heap[0][2] is watchdog:
                self._condition.notify()

    def _run(self) -> None:
        while True:
            for watchdog in self._wait_for_expired():
                try:
                    watchdog.fire()  # outside the condition's lock: requests keep entering meanwhile
                except Exception:  # the one thread must outlive any one request's failure
                    logger.exception("the deadline of an outbound request could not be enforced")

    def _wait_for_expired(self) -> list[_Watchdog]:
        """Wait until the deadline of a request still in flight has passed; take those off the heap."""
        with self._condition:
            while True:
                now = time.monotonic()
                expired = []
                while self._heap and (self._heap[0][2].finished or self._heap[0][0] <= now):
                    watchdog = heapq.heappop(self._heap)[2]
                    if not watchdog.finished:
                        expired.append(watchdog)
                if expired:
                    return expired
                self._condition.wait(self._heap[0][0] - now if self._heap else None)


_deadlines = _Deadlines()


# --- The session ----------------------------------------------------------------------------------


def _build_session() -> requests.Session:
    """The Session that holds the guarded adapters (and their connection pools). Requests go to its
    adapters directly (send()), so no proxy or .netrc credentials from the environment ever apply: a
    destination is user-supplied, and must never receive credentials it was not configured with."""
    session = requests.Session()
    pool_size = settings.DATAPUSHER_DELIVERY_CONCURRENCY
    for scheme in ("http://", "https://"):
        session.mount(scheme, _GuardedAdapter(pool_connections=pool_size, pool_maxsize=pool_size))
    return session


_session = _build_session()


def deadline_seconds() -> float:
    """The longest one request may take, end to end: connect timeout + read timeout."""
    return settings.DATAPUSHER_CONNECT_TIMEOUT + settings.DATAPUSHER_READ_TIMEOUT


def _root_cause(err: BaseException) -> str:
    """The innermost reason of a requests/urllib3 error, without urllib3's connection repr."""
    reason: BaseException = err
    while True:
        inner = getattr(reason, "reason", None) or (reason.args[0] if reason.args else None)
        if not isinstance(inner, BaseException):
            break
        reason = inner
    return re.sub(r"^\w*HTTPS?Connection\(.*?\): ", "", str(reason))


def _retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds from now: delta-seconds or an HTTP-date (RFC 9110); None if absent or bad."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(when.timestamp() - time.time(), 0.0)


def _read_capped(chunks: Iterable[bytes], limit: int) -> bytes:
    body = bytearray()
    for chunk in chunks:
        body += chunk
        if len(body) >= limit:
            break
    return bytes(body[:limit])


def _encoded_query(url: str, params: Sequence[tuple[str, str]]) -> str:
    """`params` URL-encoded as requests encodes them, for it to send as they are.

    Raises QueryTooLong when they and the URL's own query make a query string longer than
    DATAPUSHER_MAX_QUERY_BYTES.
    """
    if not params:  # a body request: its URL, at most 2048 characters, was checked when saved
        return ""
    encoded = urllib.parse.urlencode(params)
    query = "&".join(part for part in (urllib.parse.urlsplit(url).query, encoded) if part)
    size = len(requote_uri(query))  # as sent: requests quotes what the URL itself left unquoted
    limit = settings.DATAPUSHER_MAX_QUERY_BYTES
    if size > limit:
        raise QueryTooLong(
            f"query string of {size} bytes exceeds DATAPUSHER_MAX_QUERY_BYTES ({limit}); not sent"
        )
    return encoded


def _prepare(
    *, method: str, url: str, headers: dict[str, str], query: str, body: bytes | None
) -> PreparedRequest:
    """The request as requests would send it, with our User-Agent unless `headers` names another."""
    all_headers = CaseInsensitiveDict({"User-Agent": USER_AGENT})
    all_headers.update(headers)
    prepared = PreparedRequest()
    prepared.prepare_method(method)
    prepared.prepare_url(url, query)
    prepared.prepare_headers(all_headers)
    prepared.prepare_body(body, None)
    prepared.prepare_auth(None, url)  # credentials in the URL (user:pass@host) as Basic auth
    return prepared


def send(
    *,
    method: str,
    url: str,
    headers: dict[str, str],
    params: Sequence[tuple[str, str]] = (),
    body: bytes | None = None,
    sign: Callable[[bytes], dict[str, str]] | None = None,
) -> OutboundResponse:
    """Send one request; return its status and the start of its body. `sign`, given the content to
    sign (the body; without one, the query string exactly as sent), returns headers to add.

    Raises QueryTooLong before anything is sent; OutboundTimeout, OutboundConnectionError,
    AddressNotAllowed or OutboundError when there is no complete answer within the deadline.
    """
    query = _encoded_query(url, params)
    connect_timeout = settings.DATAPUSHER_CONNECT_TIMEOUT
    read_timeout = settings.DATAPUSHER_READ_TIMEOUT
    deadline = deadline_seconds()
    with _Watchdog(deadline) as watchdog:
        try:
            prepared = _prepare(method=method, url=url, headers=headers, query=query, body=body)
            if sign is not None:
                signed = body if body is not None else urllib.parse.urlsplit(prepared.url).query.encode()
                prepared.headers.update(sign(signed))
            # The adapter directly, past the Session: nothing of its layer applies (cookies, hooks,
            # proxies and settings from the environment, redirects), and it cost a fifth of a send.
            response = _session.get_adapter(url).send(
                prepared,
                stream=True,
                timeout=(connect_timeout, read_timeout),
                verify=True,
                cert=None,
                proxies={},
            )
            with response:
                content = _read_capped(response.iter_content(8192), settings.DATAPUSHER_RESPONSE_MAX_BYTES)
                fired = watchdog.fired
                watchdog.finish()  # before closing the response hands the connection back
        except OutboundError:  # raised by the guarded connection itself
            raise
        except requests.ConnectTimeout as err:
            raise OutboundTimeout(f"connect timed out after {connect_timeout:g}s") from err
        except requests.ReadTimeout as err:
            raise OutboundTimeout(f"read timed out after {read_timeout:g}s") from err
        except requests.RequestException as err:
            if watchdog.fired:
                raise OutboundTimeout(f"no complete response within {deadline:g}s") from err
            if isinstance(err, requests.ConnectionError):
                raise OutboundConnectionError(f"connection failed: {_root_cause(err)}") from err
            raise OutboundError(f"request failed: {_root_cause(err)}") from err
        if fired:  # the cut looked like the end of a close-delimited body
            raise OutboundTimeout(f"no complete response within {deadline:g}s")
    return OutboundResponse(
        status_code=response.status_code,
        body=content,
        retry_after=_retry_after_seconds(response.headers.get("Retry-After")),
        disable_requested=response.headers.get(DELIVERY_CONTROL_HEADER, "").strip().lower() == "disable",
    )


def timed_send(**request) -> tuple[OutboundResponse | OutboundError, float, float]:
    """send(), never raising: (response or error, start unix time, duration in seconds).

    An unexpected exception is logged and becomes a failed attempt, so one destination can never
    break an ingest or the other destinations.
    """
    started = time.time()
    clock = time.monotonic()
    try:
        outcome: OutboundResponse | OutboundError = send(**request)
    except OutboundError as err:
        outcome = err
    except Exception as err:
        logger.exception(
            "unexpected error sending to %s", addresses.url_without_credentials(request.get("url", ""))
        )
        outcome = OutboundError(f"unexpected error: {type(err).__name__}")
    return outcome, started, time.monotonic() - clock
