"""Fixtures for the integration suites: a real broker, real worker, dispatcher and gunicorn processes."""

import io
import json
import logging
import logging.config
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import responses
from django.db import connection

from datapusher.celery import app as celery_app
from server import broker

ROOT = Path(__file__).resolve().parents[2]
REDIS_BROKER_URL = os.environ.get("DATAPUSHER_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
RABBITMQ_BROKER_URL = os.environ.get("DATAPUSHER_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//")


def service_missing(reason: str) -> None:
    """Skip on a laptop without the service; fail in CI (DATAPUSHER_REQUIRE_SERVICES=1)."""
    if os.environ.get("DATAPUSHER_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason} (DATAPUSHER_REQUIRE_SERVICES=1 requires it)")
    pytest.skip(reason)


def wait_until(predicate: Callable[[], bool], timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(message)


@pytest.fixture
def postgres(transactional_db):
    """Worker, dispatcher or gunicorn processes share the test database: it must be a server."""
    if connection.vendor != "postgresql":
        pytest.skip(
            "other processes (worker, dispatcher, gunicorn) share the test database: runs on PostgreSQL "
            "(DATABASE_URL=postgres://postgres@127.0.0.1:5432/test make test; CI runs it)"
        )
    return connection.settings_dict


def _redis_ready(url: str) -> bool:
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1)
        client.flushdb()
        return True
    except redis.RedisError:
        return False


def _rabbitmq_ready(url: str) -> bool:
    try:
        with celery_app.connection_for_write(url) as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        return True
    except Exception:  # any failure means: not there
        return False


@pytest.fixture(params=["redis"])
def broker_url(request) -> str:
    """A reachable, empty broker (Redis by default; tests may ask for RabbitMQ)."""
    if request.param == "redis":
        if not _redis_ready(REDIS_BROKER_URL):
            service_missing(f"Redis is not reachable at {REDIS_BROKER_URL}")
        return REDIS_BROKER_URL
    if not _rabbitmq_ready(RABBITMQ_BROKER_URL):
        service_missing(f"RabbitMQ is not reachable at {RABBITMQ_BROKER_URL}")
    return RABBITMQ_BROKER_URL


@pytest.fixture
def queue_mode(settings, monkeypatch, postgres, broker_url):
    """This process ingests in queue mode and publishes to the test broker, through a broker link of
    its own (so a link left resting by one test cannot hold the next back)."""
    settings.DATAPUSHER_DELIVERY_MODE = "queue"
    settings.CELERY_BROKER_URL = broker_url
    monkeypatch.setattr(broker, "_link", broker._Link())
    return broker_url


class Service:
    """A process of ours (a worker, the dispatcher, gunicorn) in its own process group, its output in
    a log file; started once `ready(log text)` says so."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path, ready: Callable[[str], bool]):
        self.argv, self.env, self.log, self.ready, self.process = argv, env, log, ready, None

    def start(self) -> "Service":
        with self.log.open("w") as log:
            self.process = subprocess.Popen(  # noqa: S603 (our own command line)
                self.argv,
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_until(
            lambda: self.process.poll() is not None or self.ready(self.log.read_text()),
            30,
            f"{self.argv[2]} did not start:\n{self.output()}",
        )
        assert self.process.poll() is None, f"{self.argv[2]} exited:\n{self.output()}"
        return self

    def kill(self) -> None:
        """SIGKILL the whole process group at once, as a crash or an OOM kill would."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def output(self) -> str:
        return self.log.read_text()[-4000:]


@pytest.fixture
def services(tmp_path) -> Iterator[Callable[..., Service]]:
    """A factory of Services, all stopped at the end of the test."""
    started: list[Service] = []

    def start(argv: list[str], env: dict[str, str], ready: Callable[[str], bool]) -> Service:
        service = Service(argv, env, tmp_path / f"{len(started)}-{argv[2]}.log", ready)
        started.append(service)
        return service.start()

    yield start
    for service in started:
        service.stop()


def production_env(*, database_url: str, **overrides: str) -> dict[str, str]:
    """The environment of a process on the production settings, delivering to loopback receivers."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "datapusher.settings",
        "SECRET_KEY": "integration-suite",
        "DEBUG": "false",
        "DATABASE_URL": database_url,
        "DATAPUSHER_ALLOWED_NETWORKS": "127.0.0.0/8,::1/128",
        # As `make run` writes into .env: destinations' credentials can be stored.
        "DATAPUSHER_ENCRYPTION_KEYS": "aW50ZWdyYXRpb24tc3VpdGUtZW5jcnlwdGlvbi1rZXk=",
        **overrides,
    }


# Short waits for the queue suite: retries after 1 s, a 1 + 4 s deadline, a dispatcher every 0.2 s.
FAST = {
    "DATAPUSHER_RETRY_SCHEDULE": "1,1,1",
    "DATAPUSHER_RETRY_JITTER": "0",
    "DATAPUSHER_CONNECT_TIMEOUT": "1",
    "DATAPUSHER_READ_TIMEOUT": "4",
    "DATAPUSHER_DISPATCH_INTERVAL": "0.2",
    "CONN_MAX_AGE": "0",
}


def queue_env(
    queue_mode: str, postgres: dict, *, defaults: bool, overrides: dict[str, str]
) -> dict[str, str]:
    database_url = "postgres://{USER}@{HOST}:{PORT}/{NAME}".format(**postgres)
    settings = {"CELERY_BROKER_URL": queue_mode, **({} if defaults else FAST), **overrides}
    return production_env(database_url=database_url, **settings)


@pytest.fixture
def worker(queue_mode, postgres, services) -> Callable[..., Service]:
    """A factory of `celery worker` processes (4 threads) on the test database and broker: with the
    FAST settings, or every setting at its production default with defaults=True."""

    def start(*, defaults: bool = False, **overrides: str) -> Service:
        argv = [sys.executable, "-m", "celery", "-A", "datapusher", "worker", "--pool", "threads"]
        argv += ["--concurrency", "4", "--loglevel", "INFO", "--without-mingle", "--without-gossip"]
        argv += ["--hostname", f"test-{uuid.uuid4().hex[:8]}@%h"]
        env = queue_env(queue_mode, postgres, defaults=defaults, overrides=overrides)
        return services(argv, env, lambda log: " ready." in log)

    return start


@pytest.fixture
def dispatcher(queue_mode, postgres, services) -> Callable[..., Service]:
    """A factory of `manage.py dispatch` processes, configured as `worker` configures workers."""

    def start(*, defaults: bool = False, **overrides: str) -> Service:
        env = queue_env(queue_mode, postgres, defaults=defaults, overrides=overrides)
        return services([sys.executable, "manage.py", "dispatch"], env, lambda log: "Dispatching" in log)

    return start


@pytest.fixture
def mocked():
    """`responses` intercepting outbound HTTP; every registered URL must be called."""
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        yield rsps


def web_env(*, database_url: str, **overrides: str) -> dict[str, str]:
    """The environment of a web process on the production settings, delivering inline."""
    return production_env(
        database_url=database_url, DATAPUSHER_DELIVERY_MODE="sync", CELERY_BROKER_URL="", **overrides
    )


def python(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run Python with `args` in the repository, with `env`, to its end (2 minutes at most)."""
    return subprocess.run(  # noqa: S603 (our own command line)
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def manage(*args: str, env: dict[str, str]) -> str:
    """Run `manage.py` in a subprocess with `env`; returns its stdout."""
    finished = python("manage.py", *args, env=env)
    assert finished.returncode == 0, f"manage.py {' '.join(args)} failed:\n{finished.stderr[-4000:]}"
    return finished.stdout


@dataclass
class WebServer:
    service: Service

    @property
    def url(self) -> str:
        return re.search(r"Listening at: (http://127\.0\.0\.1:\d+)", self.service.log.read_text())[1]


@pytest.fixture
def gunicorn(services) -> Callable[..., WebServer]:
    """A factory of gunicorn processes as `make serve` runs them (gthread), on a free port:
    start(database_url=..., workers=1, threads=4, **settings from the environment) -> WebServer."""

    def start(*, database_url: str, workers: int = 1, threads: int = 4, **overrides: str) -> WebServer:
        argv = [sys.executable, "-m", "gunicorn", "datapusher.wsgi", "--bind", "127.0.0.1:0"]
        argv += ["--workers", str(workers), "--worker-class", "gthread", "--threads", str(threads)]
        argv += ["--timeout", "60", "--graceful-timeout", "5", "--no-control-socket"]
        argv += ["--config", "python:datapusher.gunicorn_conf"]
        booted = "Booting worker with pid"
        return WebServer(
            services(
                argv,
                web_env(database_url=database_url, **overrides),
                lambda log: log.count(booted) >= workers,
            )
        )

    return start


class SilentBroker:
    """A TCP proxy in front of the test Redis that can go silent: paused, it accepts connections and
    never answers (as a paused or wedged broker does); resumed, it forwards again, dropping the
    connections that saw the silence."""

    def __init__(self, target: str):
        parts = urlsplit(target)
        self.target = (parts.hostname, parts.port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"redis://127.0.0.1:{self.listener.getsockname()[1]}{parts.path}"
        self.open = threading.Event()
        self.open.set()
        self.generation = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def pause(self) -> None:
        self.open.clear()
        self.generation += 1

    def resume(self) -> None:
        self.generation += 1
        self.open.set()

    def close(self) -> None:
        self.resume()
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink, self.generation), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, generation: int) -> None:
        try:
            while data := source.recv(65536):
                self.open.wait()
                if generation != self.generation:
                    break
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                end.close()


@pytest.fixture
def silent_broker(queue_mode) -> Iterator[SilentBroker]:
    """A SilentBroker in front of the test Redis (running, not paused)."""
    proxy = SilentBroker(queue_mode)
    yield proxy
    proxy.close()


@dataclass
class Site:
    """A gunicorn-served app on its own migrated SQLite database, with a staff API token."""

    server: WebServer
    api_token: str

    @property
    def url(self) -> str:
        return self.server.url


@pytest.fixture
def sqlite_site(gunicorn, tmp_path) -> Callable[..., Site]:
    """A factory: start(**settings from the environment) -> Site, its database in tmp_path."""

    def start(**overrides: str) -> Site:
        database_url = f"sqlite:///{tmp_path / 'site.sqlite3'}"
        env = web_env(database_url=database_url, **overrides)
        manage("migrate", "--noinput", env=env)
        api_token = manage("create_api_token", "tester", env=env).strip()
        return Site(server=gunicorn(database_url=database_url, **overrides), api_token=api_token)

    return start


@dataclass
class JsonLog:
    """The lines the JSON log format wrote, as objects."""

    stream: io.StringIO

    def lines(self, *loggers: str) -> list[dict]:
        """Every line so far, or those of the named loggers, parsed."""
        parsed = [json.loads(line) for line in self.stream.getvalue().splitlines()]
        return [line for line in parsed if not loggers or line["logger"] in loggers]


@pytest.fixture
def json_log(settings) -> Iterator[JsonLog]:
    """The root logger also writes through the `json` formatter and `request_id` filter that
    settings.LOGGING configures (DATAPUSHER_LOG_FORMAT=json), into a buffer."""
    configurator = logging.config.DictConfigurator(settings.LOGGING)
    handler = logging.StreamHandler(io.StringIO())
    handler.setLevel(logging.INFO)
    handler.setFormatter(configurator.configure_formatter(dict(settings.LOGGING["formatters"]["json"])))
    handler.addFilter(configurator.configure_filter(dict(settings.LOGGING["filters"]["request_id"])))
    logging.getLogger().addHandler(handler)
    yield JsonLog(stream=handler.stream)
    logging.getLogger().removeHandler(handler)


@dataclass
class SilentListener:
    port: int
    accepted: list[socket.socket]


@pytest.fixture
def silent_listener() -> Iterator[SilentListener]:
    """A local port that accepts connections and never says a word (the connections in `accepted`)."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def accept():
        while True:
            try:
                held.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield SilentListener(port=listener.getsockname()[1], accepted=held)
    listener.close()
    for conn in held:
        conn.close()


@pytest.fixture
def silent_port(silent_listener) -> int:
    """A port that accepts connections and never says a word."""
    return silent_listener.port
