"""All talk with the broker goes through here, each call bounded in time; nothing else sends tasks.

A thread of this process owns the broker connection and does the talking. A caller waits for it at
most DATAPUSHER_PUBLISH_TIMEOUT seconds in all, whatever the broker does (refuses, accepts and then
says nothing, or has a host name that is slow to resolve), and nothing is retried in the caller.
After a failure or a timeout the process leaves the broker alone for DATAPUSHER_PUBLISH_BACKOFF
seconds (callers get nothing published, at once), and a thread that did not come back is abandoned
with its connection: the next call starts a fresh one. The database is the source of truth: what
was not published, the dispatcher publishes once the broker answers again.
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
# A publish stops starting messages this long before its deadline, so that it returns in time.
CUTOFF = 0.05

logger = logging.getLogger(__name__)


def configured() -> bool:
    """Is there a broker (CELERY_BROKER_URL)? Background retries and queue mode need one."""
    return bool(settings.CELERY_BROKER_URL)


class _Session:
    """One connection to the broker, used by one link thread only."""

    def __init__(self) -> None:
        self.url = ""
        self.connection: Connection | None = None
        self._producer = None

    def connect(self) -> Connection:
        url = settings.CELERY_BROKER_URL
        if self.connection is None or self.url != url:
            self.close()
            timeout = settings.DATAPUSHER_PUBLISH_TIMEOUT
            self.url = url
            self.connection = celery_app.connection_for_write(
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
        return self.connection

    def producer(self):
        connection = self.connect()
        if self._producer is None or self._producer.connection is not connection:
            self._producer = celery_app.amqp.Producer(connection)
        return self._producer

    def close(self) -> None:
        if self.connection is not None:
            try:
                self.connection.release()
            except Exception:  # a broken connection may fail to close; it is dropped either way
                logger.debug("closing the broker connection failed", exc_info=True)
        self.connection = self._producer = None


_STOP = object()  # tells an abandoned thread to close its connection and end


def _serve(jobs: queue.SimpleQueue, link: "_Link") -> None:
    session = _Session()
    while True:
        job, future = jobs.get()
        if job is _STOP:
            session.close()
            return
        if not future.set_running_or_notify_cancel():
            continue
        try:
            future.set_result(job(session))
        except Exception as err:
            session.close()
            link.rest(f"{type(err).__name__}: {err}")
            future.set_exception(err)


class _Link:
    """The thread that talks to the broker for this process, and whether it is resting."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: queue.SimpleQueue | None = None
        self._pid: int | None = None
        self._resting_until = 0.0

    def resting(self) -> bool:
        return time.monotonic() < self._resting_until

    def rest(self, reason: str) -> None:
        backoff = settings.DATAPUSHER_PUBLISH_BACKOFF
        self._resting_until = time.monotonic() + backoff
        logger.warning("broker unavailable (%s); not publishing for %gs", reason, backoff)

    def call(self, job: Callable[[_Session], Any], *, deadline: float) -> tuple[bool, Any]:
        """(True, job(session)) run on the link's thread, or (False, None) if the job failed, had not
        finished by `deadline` (time.monotonic()), or the link is resting after a recent failure."""
        if self.resting():
            return False, None
        jobs = self._thread_jobs()
        future: Future = Future()
        jobs.put((job, future))
        try:
            return True, future.result(timeout=max(deadline - time.monotonic(), 0))
        except FuturesTimeout:
            future.cancel()  # if it has not started, it never will
            self._abandon(jobs)
            self.rest(f"no answer within {settings.DATAPUSHER_PUBLISH_TIMEOUT:g}s")
            return False, None
        except Exception:  # the job failed: the link's thread has logged it and is resting
            return False, None

    def _thread_jobs(self) -> queue.SimpleQueue:
        """The job queue of the live link thread, started on first use (and in a forked child, which
        inherits no threads)."""
        with self._lock:
            if self._jobs is None or self._pid != os.getpid():
                self._jobs, self._pid = queue.SimpleQueue(), os.getpid()
                threading.Thread(
                    target=_serve, args=(self._jobs, self), name="broker-link", daemon=True
                ).start()
            return self._jobs

    def _abandon(self, jobs: queue.SimpleQueue) -> None:
        """The thread serving `jobs` is stuck: later calls get a new thread and connection, and the
        old one closes its connection and ends if it ever comes back."""
        with self._lock:
            if self._jobs is jobs:
                self._jobs = None
        jobs.put((_STOP, None))


_link = _Link()


def accepting() -> bool:
    """Is it worth trying to publish now (a broker configured, and no failure in the last backoff)?"""
    return configured() and not _link.resting()


def publish(*, delivery_pks: Sequence[int]) -> int:
    """Send one `deliver` task per delivery, in order, for at most DATAPUSHER_PUBLISH_TIMEOUT in all.
    Returns how many of `delivery_pks` were published (all, or what fitted in the time; 0 if the
    broker failed or did not answer)."""
    if not configured() or not delivery_pks:
        return 0
    deadline = time.monotonic() + settings.DATAPUSHER_PUBLISH_TIMEOUT

    def send(session: _Session) -> int:
        producer = session.producer()
        for count, pk in enumerate(delivery_pks):
            if time.monotonic() >= deadline - CUTOFF:
                return count  # the rest is for the dispatcher's next round
            celery_app.send_task(DELIVER_TASK, args=[pk], producer=producer, retry=False)
        return len(delivery_pks)

    ok, published = _link.call(send, deadline=deadline)
    return published if ok else 0


def queue_depth() -> int | None:
    """Messages waiting in the deliveries' queue (not yet taken by a worker), or None if unknown."""
    if not configured():
        return None

    def depth(session: _Session) -> int:
        connection = session.connect()
        channel = connection.channel()
        try:
            return channel.queue_declare(queue=celery_app.conf.task_default_queue, passive=True).message_count
        except connection.channel_errors:  # no such queue yet: nothing in it
            return 0
        finally:
            with contextlib.suppress(*connection.channel_errors, *connection.connection_errors):
                channel.close()

    ok, count = _link.call(depth, deadline=time.monotonic() + settings.DATAPUSHER_PUBLISH_TIMEOUT)
    return count if ok else None
