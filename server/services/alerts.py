"""The alert hook: a WARNING line when a delivery fails for good, when a destination's attempts have
failed DATAPUSHER_ALERT_AFTER_FAILURES times in a row (once, on reaching it; a success starts the
count again), when its circuit opens, and when it is turned off (410 Gone, `webhook-delivery:
disable`, or a circuit open for DATAPUSHER_DISABLE_AFTER). With DATAPUSHER_ALERT_URL set, each alert
is also POSTed there as JSON, by one background thread per process through server.http (its timeouts
and address guard): a sender only queues it, a full queue drops it with a warning, and a
notification that fails is logged, never raised. Neither the lines nor the notifications hold a URL,
a header value or a secret.
"""

import json
import logging
import os
import queue
import threading
import time
from datetime import datetime
from typing import Any

from django.conf import settings
from django.utils import timezone

from datapusher.logs import request_id_bound
from server import http
from server.models import Delivery

DELIVERY_FAILED = "delivery_failed"
DESTINATION_FAILING = "destination_failing"
DESTINATION_DISABLED = "destination_disabled"
CIRCUIT_OPENED = "circuit_opened"
ERROR_EXCERPT_CHARS = 500
# Notifications waiting to be POSTed per process; more are dropped, each with a warning.
NOTIFICATION_QUEUE_SIZE = 100

logger = logging.getLogger(__name__)


def _error_excerpt(error: str) -> str:
    return error[:ERROR_EXCERPT_CHARS]


def _delivery_fields(delivery: Delivery) -> dict[str, Any]:
    return {
        "account_id": str(delivery.event.account_id),
        "event_id": str(delivery.event_id),
        "delivery_id": str(delivery.delivery_id),
        "destination_id": delivery.destination_id,
        "request_id": delivery.event.request_id or None,
    }


def _alert(*, kind: str, message: str, fields: dict[str, Any]) -> None:
    """The WARNING line (request_id is the line's own), and the notification when a URL is set."""
    line = {name: value for name, value in fields.items() if name != "request_id"}
    logger.warning(message, extra={"alert": kind, **line})
    if settings.DATAPUSHER_ALERT_URL:
        notifier.put(
            settings.DATAPUSHER_ALERT_URL, {"type": kind, "time": timezone.now().isoformat(), **fields}
        )


def delivery_failed_alert(*, delivery: Delivery) -> None:
    """Alert that `delivery` (with its event) failed for good: no attempt is left, or its failure
    is permanent."""
    _alert(
        kind=DELIVERY_FAILED,
        message="delivery failed for good",
        fields={
            **_delivery_fields(delivery),
            "attempts": delivery.attempt_count,
            "status_code": delivery.last_status_code,
            "error": _error_excerpt(delivery.error),
        },
    )


def destination_disabled_alert(*, delivery: Delivery, reason: str) -> None:
    """Alert that the answer to `delivery` (with its event) turned its destination off: 410 Gone,
    the `webhook-delivery: disable` header, or a probe failing after DATAPUSHER_DISABLE_AFTER of
    open circuit. Its deliveries are paused until it is resumed."""
    _alert(
        kind=DESTINATION_DISABLED,
        message="destination disabled",
        fields={**_delivery_fields(delivery), "status_code": delivery.last_status_code, "reason": reason},
    )


def destination_failing_alert(*, delivery: Delivery, consecutive_failures: int) -> None:
    """Alert that `delivery`'s failure (with its event) took its destination's retryable failures in
    a row to DATAPUSHER_ALERT_AFTER_FAILURES (server/services/breaker.py counts them)."""
    _alert(
        kind=DESTINATION_FAILING,
        message="destination keeps failing",
        fields={
            **_delivery_fields(delivery),
            "consecutive_failures": consecutive_failures,
            "status_code": delivery.last_status_code,
            "error": _error_excerpt(delivery.error),
        },
    )


def circuit_opened_alert(*, delivery: Delivery, consecutive_failures: int, next_probe_at: datetime) -> None:
    """Alert that `delivery`'s failure opened its destination's circuit: its deliveries are held
    back until a probe at `next_probe_at` is answered."""
    _alert(
        kind=CIRCUIT_OPENED,
        message="destination circuit opened",
        fields={
            **_delivery_fields(delivery),
            "consecutive_failures": consecutive_failures,
            "next_probe_at": next_probe_at.isoformat(),
            "status_code": delivery.last_status_code,
            "error": _error_excerpt(delivery.error),
        },
    )


class _Notifier:
    """The thread that POSTs this process's notifications, one at a time, and its bounded queue."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: queue.Queue | None = None
        self._pid: int | None = None

    def put(self, url: str, notification: dict[str, Any]) -> None:
        """Queue a notification to POST to `url`; drop it with a warning when the queue is full."""
        try:
            self._thread_queue().put_nowait((url, notification))
        except queue.Full:
            logger.warning(
                "alert notification dropped: %s are waiting already",
                NOTIFICATION_QUEUE_SIZE,
                extra={"alert": notification["type"]},
            )

    def wait_idle(self, timeout: float) -> bool:
        """Whether every queued notification has been handled within `timeout` seconds."""
        notifications = self._queue
        give_up_at = time.monotonic() + timeout
        while notifications is not None and notifications.unfinished_tasks:
            if time.monotonic() >= give_up_at:
                return False
            time.sleep(0.01)
        return True

    def _thread_queue(self) -> queue.Queue:
        """The live thread's queue, started on first use (and in a forked child, which has no threads)."""
        with self._lock:
            if self._queue is None or self._pid != os.getpid():
                self._queue, self._pid = queue.Queue(maxsize=NOTIFICATION_QUEUE_SIZE), os.getpid()
                threading.Thread(
                    target=self._serve, args=(self._queue,), name="alert-notifier", daemon=True
                ).start()
            return self._queue

    @staticmethod
    def _serve(notifications: queue.Queue) -> None:
        while True:
            url, notification = notifications.get()
            try:
                with request_id_bound(notification.get("request_id")):
                    _notification_post(url=url, notification=notification)
            except Exception:  # the one thread must outlive any one notification
                logger.exception("alert notification failed", extra={"alert": notification["type"]})
            finally:
                notifications.task_done()


def _notification_post(*, url: str, notification: dict[str, Any]) -> None:
    """POST one notification to `url`; a failure or a non-2xx answer is logged."""
    body = json.dumps(notification, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json"}
    try:
        response = http.send(method="POST", url=url, headers=headers, body=body)
    except http.OutboundError as err:
        logger.warning("alert notification not delivered: %s", err, extra={"alert": notification["type"]})
        return
    if not response.succeeded:
        logger.warning(
            "alert notification not delivered: HTTP %s",
            response.status_code,
            extra={"alert": notification["type"]},
        )


notifier = _Notifier()
