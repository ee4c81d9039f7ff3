"""All talk with the broker goes through here, each call bounded in time; nothing else sends tasks.

One thread per process owns a broker connection and does the talking. A caller waits for it at most
DATAPUSHER_PUBLISH_TIMEOUT seconds, whatever the broker does (refuses, accepts and then says
nothing, or has a host name that is slow to resolve), and nothing is retried in the caller. After a
failure or a timeout the process leaves the broker alone for DATAPUSHER_PUBLISH_BACKOFF seconds:
callers get False at once. The database is the source of truth: whatever was not published, the
dispatcher publishes once the broker answers again.
"""

import contextlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FuturesTimeout
from typing import Any

from django.conf import settings
from kombu import Connection

from datapusher.celery import app as celery_app

DELIVER_TASK = "server.tasks.deliver"
# Messages published in one bounded call: a large batch on a distant broker is many calls, each
# well within DATAPUSHER_PUBLISH_TIMEOUT, not one that cannot be.
PUBLISH_CHUNK = 100

logger = logging.getLogger(__name__)


def configured() -> bool:
    """Is there a broker (CELERY_BROKER_URL)? Background retries and queue mode need one."""
    return bool(settings.CELERY_BROKER_URL)


class _Link:
    """The broker connection and the one thread that uses it."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[Connection], Any], Future]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid: int | None = None
        self._resting_until = 0.0
        # Touched by the link's thread only.
        self._connection: Connection | None = None
        self._url = ""
        self._producer = None

    def resting(self) -> bool:
        return time.monotonic() < self._resting_until

    def call(self, job: Callable[[Connection], Any]) -> tuple[bool, Any]:
        """(True, job(connection)) run on the link's thread, or (False, None) if the job failed, took
        longer than DATAPUSHER_PUBLISH_TIMEOUT, or the link is resting after a recent failure."""
        if self.resting():
            return False, None
        self._start()
        future: Future = Future()
        self._jobs.put((job, future))
        try:
            return True, future.result(timeout=settings.DATAPUSHER_PUBLISH_TIMEOUT)
        except FuturesTimeout:
            future.cancel()  # if it has not started, it never will; if it has, let it finish
            self._rest(f"no answer within {settings.DATAPUSHER_PUBLISH_TIMEOUT:g}s")
            return False, None
        except Exception:  # the job failed: the link's thread has logged it and is resting
            return False, None

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None and self._pid == os.getpid():
                return
            # First use, or a forked child, which inherits no threads.
            self._jobs = queue.SimpleQueue()
            self._connection = self._producer = None
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self._serve, name="broker-link", daemon=True)
            self._thread.start()

    def _serve(self) -> None:
        jobs = self._jobs
        while True:
            job, future = jobs.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(job(self._connect()))
            except Exception as err:
                self._disconnect()
                self._rest(f"{type(err).__name__}: {err}")
                future.set_exception(err)

    def _connect(self) -> Connection:
        url = settings.CELERY_BROKER_URL
        if self._connection is not None and self._url == url:
            return self._connection
        self._disconnect()
        self._url = url
        timeout = settings.DATAPUSHER_PUBLISH_TIMEOUT
        self._connection = celery_app.connection_for_write(
            url,
            connect_timeout=timeout,
            transport_options={
                **celery_app.conf.broker_transport_options,
                # Redis, then RabbitMQ (py-amqp): every socket operation bounded, no reconnect loop.
                "socket_connect_timeout": timeout,
                "socket_timeout": timeout,
                "read_timeout": timeout,
                "write_timeout": timeout,
                "max_retries": 0,
            },
        )
        return self._connection

    def producer(self, connection: Connection):
        if self._producer is None or self._producer.connection is not connection:
            self._producer = celery_app.amqp.Producer(connection)
        return self._producer

    def _disconnect(self) -> None:
        if self._connection is not None:
            try:
                self._connection.release()
            except Exception:  # a broken connection may fail to close; it is dropped either way
                logger.debug("closing the broker connection failed", exc_info=True)
        self._connection = self._producer = None

    def _rest(self, reason: str) -> None:
        backoff = settings.DATAPUSHER_PUBLISH_BACKOFF
        self._resting_until = time.monotonic() + backoff
        logger.warning("broker unavailable (%s); not publishing for %gs", reason, backoff)


_link = _Link()


def accepting() -> bool:
    """Is it worth trying to publish now (a broker configured, and no failure in the last backoff)?"""
    return configured() and not _link.resting()


def publish(*, delivery_pks: Sequence[int]) -> int:
    """Send one `deliver` task per delivery, in order, in chunks each bounded in time; stops at the
    first chunk the broker does not take. Returns how many of `delivery_pks` were published."""
    if not configured():
        return 0
    published = 0
    for start in range(0, len(delivery_pks), PUBLISH_CHUNK):
        chunk = delivery_pks[start : start + PUBLISH_CHUNK]

        def send_chunk(connection: Connection, chunk: Sequence[int] = chunk) -> None:
            producer = _link.producer(connection)
            for pk in chunk:
                celery_app.send_task(DELIVER_TASK, args=[pk], producer=producer, retry=False)

        ok, _ = _link.call(send_chunk)
        if not ok:
            break
        published += len(chunk)
    return published


def queue_depth() -> int | None:
    """Messages waiting in the deliveries' queue (not yet taken by a worker), or None if unknown."""
    if not configured():
        return None

    def depth(connection: Connection) -> int:
        channel = connection.channel()
        try:
            return channel.queue_declare(queue=celery_app.conf.task_default_queue, passive=True).message_count
        except connection.channel_errors:  # no such queue yet: nothing in it
            return 0
        finally:
            with contextlib.suppress(*connection.channel_errors, *connection.connection_errors):
                channel.close()

    ok, count = _link.call(depth)
    return count if ok else None
