"""Fixtures shared by every app's tests.

On SQLite, a test marked `django_db` (not `transaction=True`) runs inside one transaction, so its
thread holds the process's writer lock (datapusher/sqlite3) throughout: another thread of the test
that begins a transaction waits for it, up to the database timeout. Tests that write from several
threads use `django_db(transaction=True)`.
"""

import base64
import binascii
import logging
import secrets
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.db import connection
from knox import crypto as knox_crypto
from knox.models import AuthToken
from rest_framework.test import APIClient

from datapusher.ratelimit import limiters_forget


@dataclass
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A real HTTP server on a loopback socket that records what it receives."""

    url: str
    requests: list[ReceivedRequest] = field(default_factory=list)
    # (handler) -> None: answers the request; the default answers 200 "ok".
    respond: Callable[[BaseHTTPRequestHandler], None] | None = None
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def _answer_ok(handler: BaseHTTPRequestHandler) -> None:
    handler.send_response(200)
    handler.send_header("Content-Length", "2")
    handler.end_headers()
    handler.wfile.write(b"ok")


class _ReceiverServer(ThreadingHTTPServer):
    daemon_threads = True
    # The listen backlog, set before the socket listens: many connections at once are accepted,
    # not dropped (which would look like a connect timeout).
    request_queue_size = 256


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A local HTTP receiver in a thread; set `receiver.respond` to change how it answers."""
    state: Receiver

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            with state.lock:
                state.requests.append(
                    ReceivedRequest(
                        method=self.command,
                        path=self.path,
                        headers=dict(self.headers.items()),
                        body=self.rfile.read(length),
                    )
                )
                state.in_flight += 1
                state.max_in_flight = max(state.max_in_flight, state.in_flight)
            try:
                (state.respond or _answer_ok)(self)
            finally:
                with state.lock:
                    state.in_flight -= 1

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        def log_message(self, format, *args):  # keep test output quiet
            pass

    server = _ReceiverServer(("127.0.0.1", 0), Handler)
    state = Receiver(url=f"http://127.0.0.1:{server.server_port}")
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


class _SecretsWatch(logging.Handler):
    """Every log record of the whole test run, formatted, beside every secret the code made."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []
        self.secrets: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(f"{record.name}: {self.format(record)}")
        except Exception:  # a record that cannot be formatted holds nothing to leak
            return


@pytest.fixture(scope="session", autouse=True)
def _no_secret_in_any_log_line() -> Iterator[_SecretsWatch]:
    """Over the whole run, at every level: no app secret token, signing secret, API token or
    generated password appears in a log line. The secrets are caught where they are made — the
    `secrets` module (app tokens, passwords, signing secrets' bytes) and knox's random bytes."""
    watch = _SecretsWatch()
    watch.setFormatter(logging.Formatter("%(message)s %(exc_text)s"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(watch)
    root.setLevel(logging.DEBUG)
    real_urlsafe, real_bytes, real_knox_bytes = (
        secrets.token_urlsafe,
        secrets.token_bytes,
        knox_crypto.generate_bytes,
    )

    def token_urlsafe(*args):
        made = real_urlsafe(*args)
        watch.secrets.add(made)
        return made

    def token_bytes(*args):
        made = real_bytes(*args)
        watch.secrets.add(base64.b64encode(made).decode())
        return made

    def knox_bytes(*args):
        made = real_knox_bytes(*args)
        watch.secrets.add(binascii.hexlify(made).decode())
        return made

    secrets.token_urlsafe, secrets.token_bytes, knox_crypto.generate_bytes = (
        token_urlsafe,
        token_bytes,
        knox_bytes,
    )
    try:
        yield watch
    finally:
        secrets.token_urlsafe, secrets.token_bytes, knox_crypto.generate_bytes = (
            real_urlsafe,
            real_bytes,
            real_knox_bytes,
        )
        root.removeHandler(watch)
        root.setLevel(level)
    text = "\n".join(watch.lines)
    leaked = sorted(secret for secret in watch.secrets if secret in text)
    assert not leaked, f"{len(leaked)} secrets in log lines, e.g. {leaked[0][:6]}… in: " + next(
        line for line in watch.lines if leaked[0] in line
    ).replace(leaked[0], "<secret>")


@pytest.fixture(autouse=True)
def _fresh_rate_limits() -> Iterator[None]:
    """Each test starts with new rate-limit counters: none carries over."""
    limiters_forget()
    yield


@pytest.fixture
def concurrent_writers():
    """Threads that write at once need a database server: the tests' in-memory SQLite refuses a
    second writer at once ("database table is locked") rather than making it wait."""
    if connection.vendor != "postgresql":
        pytest.skip(
            "needs concurrent writers: runs on PostgreSQL "
            "(DATABASE_URL=postgres://postgres@127.0.0.1:5432/test make test; CI runs it)"
        )


@pytest.fixture
def staff_user(django_user_model):
    return django_user_model.objects.create_user(username="operator", is_staff=True)


@pytest.fixture
def api_client(staff_user) -> APIClient:
    """An API client authenticated with a staff user's token, as integrators call the API."""
    client = APIClient()
    _, token = AuthToken.objects.create(user=staff_user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


@pytest.fixture
def published(monkeypatch) -> list[int]:
    """The ids of the deliveries published to the broker, recorded instead of sent: the broker
    takes them all, and its queue reads as empty."""
    sent: list[int] = []
    lock = threading.Lock()

    def publish(*, delivery_pks) -> int:
        with lock:
            sent.extend(delivery_pks)
        return len(delivery_pks)

    monkeypatch.setattr("server.broker.publish", publish)
    monkeypatch.setattr("server.broker.queue_depth", lambda: 0)
    return sent


@pytest.fixture
def broker(settings, published):
    """A configured broker (never reached: what is published is recorded), retries after 5 s then 300 s."""
    settings.CELERY_BROKER_URL = "redis://broker.invalid:6379/0"
    settings.DATAPUSHER_RETRY_SCHEDULE = [5, 300]
    settings.DATAPUSHER_RETRY_JITTER = 0
    return published


@pytest.fixture
def before_update(monkeypatch):
    """install(services_module, callback): run `callback` inside that module's update service, after
    the request has read the row and before its changes are applied — as a concurrent request would."""

    def install(services, callback):
        real_model_update = services.model_update

        def racing_model_update(**kwargs):
            callback()
            return real_model_update(**kwargs)

        monkeypatch.setattr(services, "model_update", racing_model_update)

    return install
