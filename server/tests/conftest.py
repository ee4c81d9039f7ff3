"""Fixtures for the integration suite: a real broker, a real Celery worker process, a real gunicorn."""

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import kombu.pools
import pytest
import responses
from celery import Celery
from django.db import connection

from datapusher.celery import app as celery_app

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
    """The worker is another process, so the test database must be a shared server: PostgreSQL."""
    if connection.vendor != "postgresql":
        pytest.skip(
            "the worker process needs a shared database: runs on PostgreSQL "
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
    """This process ingests in queue mode and publishes to the test broker.

    The project's app was configured (with no broker) when Django started, so messages go out
    through an app bound to the test broker; the worker process uses the real configuration.
    """
    settings.DATAPUSHER_DELIVERY_MODE = "queue"
    settings.CELERY_BROKER_URL = broker_url
    publisher = Celery("datapusher", broker=broker_url, set_as_current=False)
    publisher.conf.broker_transport_options = celery_app.conf.broker_transport_options
    monkeypatch.setattr(celery_app, "send_task", publisher.send_task)
    yield broker_url
    kombu.pools.reset()  # kombu keeps producer pools per connection, process-wide


class Worker:
    """`celery worker` in its own process group, against the test database and broker."""

    def __init__(self, env: dict[str, str], log: Path):
        self.env, self.log, self.process = env, log, None

    def start(self) -> "Worker":
        self.log.write_text("")
        self.process = subprocess.Popen(  # noqa: S603 (our own command line)
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "datapusher",
                "worker",
                "--pool",
                "threads",
                "--concurrency",
                "4",
                "--loglevel",
                "INFO",
                "--without-mingle",
                "--without-gossip",
                "--hostname",
                f"test-{uuid.uuid4().hex[:8]}@%h",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=self.log.open("a"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_until(lambda: " ready." in self.log.read_text(), 30, f"worker did not start:\n{self.output()}")
        return self

    def kill(self) -> None:
        """SIGKILL the whole worker at once, as a crash or an OOM kill would."""
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
def worker(queue_mode, postgres, tmp_path):
    """A factory of worker processes (stopped at the end); retries after 1 s, a 1 + 4 s deadline."""
    database_url = "postgres://{USER}@{HOST}:{PORT}/{NAME}".format(**postgres)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "datapusher.settings",
        "SECRET_KEY": "integration-suite-worker",
        "DATAPUSHER_ALLOWED_NETWORKS": "127.0.0.0/8,::1/128",
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": queue_mode,
        "DATAPUSHER_RETRY_SCHEDULE": "1,1,1",
        "DATAPUSHER_RETRY_JITTER": "0",
        "DATAPUSHER_CONNECT_TIMEOUT": "1",
        "DATAPUSHER_READ_TIMEOUT": "4",
        "CONN_MAX_AGE": "0",
    }
    workers: list[Worker] = []

    def start() -> Worker:
        started = Worker(env, tmp_path / f"worker-{len(workers)}.log").start()
        workers.append(started)
        return started

    yield start
    for running in workers:
        running.stop()


@pytest.fixture
def mocked():
    """`responses` intercepting outbound HTTP; every registered URL must be called."""
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        yield rsps


class WebServer:
    """`gunicorn datapusher.wsgi` in its own process group, on a free loopback port."""

    def __init__(self, env: dict[str, str], log: Path):
        self.env, self.log, self.process, self.url = env, log, None, ""

    def start(self) -> "WebServer":
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gunicorn",
                    "datapusher.wsgi",
                    "--bind",
                    "127.0.0.1:0",
                    "--worker-class",
                    "gthread",
                    "--threads",
                    "4",
                    "--timeout",
                    "60",
                    "--graceful-timeout",
                    "5",
                    "--no-control-socket",
                ],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_until(
            lambda: self.process.poll() is not None or "Booting worker" in self.log.read_text(),
            30,
            f"gunicorn did not start within 30 s; its log: {self.log}",
        )
        listening = re.search(r"Listening at: (http://127\.0\.0\.1:\d+)", self.log.read_text())
        assert self.process.poll() is None and listening, f"gunicorn did not start:\n{self.output()}"
        self.url = listening[1]
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)

    def output(self) -> str:
        return self.log.read_text()[-4000:]


def web_env(*, database_url: str, **overrides: str) -> dict[str, str]:
    """The environment of a production-settings process on `database_url`, delivering inline."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "datapusher.settings",
        "SECRET_KEY": "test-suite-web-server",
        "DEBUG": "false",
        "DATABASE_URL": database_url,
        "DATAPUSHER_ALLOWED_NETWORKS": "127.0.0.0/8",
        "DATAPUSHER_DELIVERY_MODE": "sync",
        "CELERY_BROKER_URL": "",
        **overrides,
    }


def manage(*args: str, env: dict[str, str]) -> str:
    """Run `manage.py` in a subprocess with `env`; returns its stdout."""
    finished = subprocess.run(  # noqa: S603 (our own command line)
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert finished.returncode == 0, f"manage.py {' '.join(args)} failed:\n{finished.stderr[-4000:]}"
    return finished.stdout


@pytest.fixture
def gunicorn(tmp_path) -> Iterator[Callable[..., WebServer]]:
    """A factory of gunicorn processes (stopped at the end): start(database_url=..., **settings from
    the environment) -> WebServer, on the production settings."""
    servers: list[WebServer] = []

    def start(*, database_url: str, **overrides: str) -> WebServer:
        env = web_env(database_url=database_url, **overrides)
        started = WebServer(env, tmp_path / f"gunicorn-{len(servers)}.log")
        servers.append(started)
        return started.start()

    yield start
    for running in servers:
        running.stop()


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
