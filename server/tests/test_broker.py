"""The broker link: every call bounded in time whatever the broker does, and a stuck link replaced.

A silent broker here is a local TCP listener that accepts connections and never answers; a broker
that is really there is the test Redis (skipped without it, unless DATAPUSHER_REQUIRE_SERVICES=1).
"""

import socket
import threading
import time

import pytest
import redis

from server import broker
from server.tests.conftest import REDIS_BROKER_URL, service_missing, wait_until


@pytest.fixture(autouse=True)
def link(monkeypatch, settings) -> broker._Link:
    """A fresh link for each test, bounded at 0.5 s, resting 0.3 s after a failure."""
    settings.DATAPUSHER_PUBLISH_TIMEOUT = 0.5
    settings.DATAPUSHER_PUBLISH_BACKOFF = 0.3
    fresh = broker._Link()
    monkeypatch.setattr(broker, "_link", fresh)
    return fresh


@pytest.fixture
def silent_port(silent_listener) -> int:
    """A port that accepts connections and never says a word."""
    return silent_listener.port


def link_threads() -> int:
    return sum(1 for thread in threading.enumerate() if thread.name == "broker-link" and thread.is_alive())


@pytest.mark.parametrize("scheme", ["redis://127.0.0.1:{port}/0", "amqp://guest:guest@127.0.0.1:{port}//"])
def test_a_silent_broker_costs_one_bound_then_nothing(settings, silent_port, scheme):
    """Redis or RabbitMQ accepting the connection and never answering: the publish gives up at the
    bound (0.5 s) having published nothing, and while the link rests the next one does not even try."""
    settings.CELERY_BROKER_URL = scheme.format(port=silent_port)
    started = time.monotonic()
    assert broker.publish(delivery_pks=[1, 2, 3]) == 0
    took = time.monotonic() - started
    assert 0.4 < took < 1.5
    assert broker.accepting() is False
    started = time.monotonic()
    assert (broker.publish(delivery_pks=[4]), broker.queue_depth()) == (0, None)
    assert time.monotonic() - started < 0.1


def test_a_broker_host_slow_to_resolve_costs_one_bound(settings, monkeypatch):
    """A broker host name whose lookup takes 3 s (the socket timeouts cannot reach a lookup): the
    publish still gives up at the bound."""
    real_getaddrinfo = socket.getaddrinfo

    def slow_getaddrinfo(host, *args, **kwargs):
        if host == "broker.slow-dns.example":
            time.sleep(3)
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", slow_getaddrinfo)
    settings.CELERY_BROKER_URL = "redis://broker.slow-dns.example:6379/0"
    started = time.monotonic()
    assert broker.publish(delivery_pks=[1]) == 0
    assert time.monotonic() - started < 1.5


def test_a_stuck_link_thread_is_replaced(settings, link, silent_port):
    """After a call timed out, the thread that did not come back is abandoned (it ends when its
    socket gives up) and the next call, once the rest is over, runs on a new thread."""
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{silent_port}/0"
    before = link_threads()
    assert broker.publish(delivery_pks=[1]) == 0
    assert link._jobs is None  # abandoned
    time.sleep(0.35)  # the rest is over
    assert broker.publish(delivery_pks=[2]) == 0
    wait_until(lambda: link_threads() <= before + 1, 5, "the abandoned link threads did not end")


def test_a_refusing_broker_fails_fast(settings):
    """Nothing listening: refused at once, nothing published, the link rests."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{port}/0"
    started = time.monotonic()
    assert broker.publish(delivery_pks=[1]) == 0
    assert time.monotonic() - started < 0.5
    assert broker.accepting() is False


@pytest.fixture
def real_redis(settings) -> str:
    client = redis.Redis.from_url(REDIS_BROKER_URL, socket_connect_timeout=1)
    try:
        client.flushdb()
    except redis.RedisError:
        service_missing(f"Redis is not reachable at {REDIS_BROKER_URL}")
    settings.CELERY_BROKER_URL = REDIS_BROKER_URL
    yield REDIS_BROKER_URL
    client.flushdb()


def test_a_healthy_broker_takes_every_message(real_redis):
    """Published, all of them, and the queue depth says so."""
    assert broker.publish(delivery_pks=[1, 2, 3]) == 3
    assert broker.queue_depth() == 3
    assert broker.accepting() is True


def test_a_publish_stops_at_its_bound_without_resting_the_link(settings, real_redis):
    """More messages than fit in the bound: what fitted is published and counted, the rest is left
    for the dispatcher's next round, and the link is not resting (the broker did nothing wrong)."""
    settings.DATAPUSHER_PUBLISH_TIMEOUT = 0.2
    started = time.monotonic()
    published = broker.publish(delivery_pks=list(range(1, 1_000_001)))
    assert time.monotonic() - started < 0.5
    assert 0 < published < 1_000_000
    assert broker.queue_depth() == published
    assert broker.accepting() is True
