"""Prometheus metrics: what the processes count, and the backlog the database holds when scraped.

Counters and the histogram are kept by the process that counts them. With PROMETHEUS_MULTIPROC_DIR
set in its environment before it starts (`make serve`, `make worker`), a process writes them to
files in that directory, and a scrape adds up the files found there and in its subdirectories:
every gunicorn process, and a worker on the same host writing to a subdirectory (prometheus_client's
multiprocess mode). Without it, a scrape reports the counts of the process that answers it.
"""

import glob
import logging
import os
from collections.abc import Iterable, Iterator
from functools import partial, wraps
from typing import Any

from django.db import DatabaseError, transaction
from django.http import HttpResponse
from django.utils import timezone
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

from server.models import Delivery
from server.selectors import circuits_by_state, deliveries_pending_backlog

logger = logging.getLogger(__name__)

# The ingest's outcome by its answer's status code; anything else (an exception: a 503 or 500) is "error".
INGEST_OUTCOMES = {
    200: "accepted",
    202: "accepted",
    400: "invalid",
    401: "unauthorized",
    405: "invalid",
    409: "conflict",
    411: "invalid",
    413: "too_large",
    429: "rate_limited",
}
FINAL_STATUSES = (Delivery.Status.SUCCEEDED, Delivery.Status.FAILED)

INGESTS = Counter(
    "datapusher_ingests",
    "Ingests (POST /server/incoming_data) by outcome; rate_limited: answered 429 (the account's rate "
    "limit or its share of a process), nothing stored.",
    ["outcome"],
)
DELIVERIES = Counter(
    "datapusher_deliveries", "Deliveries that reached a final status, by status.", ["status"]
)
ATTEMPT_DURATION = Histogram(
    "datapusher_attempt_duration_seconds",
    "How long each delivery attempt took, from its start to its answer or error.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30),
)
CIRCUITS_MOVED = Counter(
    "datapusher_circuit_transitions",
    "Destination circuits moved by this process (its senders, its resumes), by the state moved to "
    "(open: opened or reopened after a failed probe; closed; disabled: open for DATAPUSHER_DISABLE_AFTER).",
    ["to"],
)
CIRCUIT_MOVES = ("open", "closed", "disabled")
DELAYED = Counter(
    "datapusher_deliveries_delayed",
    "Deliveries a worker put off, unsent and with no attempt spent, by the destination's limit that held "
    "them back (rate_limit or max_in_flight).",
    ["limit"],
)
# Every series exists from the start, at 0, so that rate() sees the first one.
for _to in CIRCUIT_MOVES:
    CIRCUITS_MOVED.labels(to=_to)
for _limit in ("rate_limit", "max_in_flight"):
    DELAYED.labels(limit=_limit)
for _outcome in {*INGEST_OUTCOMES.values(), "error"}:
    INGESTS.labels(outcome=_outcome)
for _status in FINAL_STATUSES:
    DELIVERIES.labels(status=_status)


def ingests_counted(view):
    """Count each answer of the ingest view in datapusher_ingests_total by its outcome."""

    @wraps(view)
    def counted(request, *args, **kwargs):
        try:
            response = view(request, *args, **kwargs)
        except Exception:
            INGESTS.labels(outcome="error").inc()
            raise
        INGESTS.labels(outcome=INGEST_OUTCOMES.get(response.status_code, "error")).inc()
        return response

    return counted


def attempts_recorded(*, attempts: Iterable[dict[str, Any]], statuses: Iterable[str]) -> None:
    """Once the current transaction commits, count the attempts logged in it (each with its
    duration_ms) and the deliveries it left in a final status (of `statuses`)."""
    durations = [attempt["duration_ms"] / 1000 for attempt in attempts]
    finished = [status for status in statuses if status in FINAL_STATUSES]
    transaction.on_commit(partial(_count_attempts, durations=durations, finished=finished))


def circuit_moved(*, to: str) -> None:
    """Count a circuit's move to `to` (one of CIRCUIT_MOVES)."""
    CIRCUITS_MOVED.labels(to=to).inc()


def delivery_delayed(*, limit: str) -> None:
    """Count one delivery put off by its destination's `limit` (rate_limit or max_in_flight)."""
    DELAYED.labels(limit=limit).inc()


def _count_attempts(*, durations: list[float], finished: list[str]) -> None:
    for duration in durations:
        ATTEMPT_DURATION.observe(duration)
    for status in finished:
        DELIVERIES.labels(status=status).inc()


class _Backlog:
    """Pending deliveries and the age of the oldest, and the circuits not closed, read from the
    database at scrape time (left out while the database is unavailable)."""

    def collect(self) -> Iterator[Metric]:
        try:
            count, oldest = deliveries_pending_backlog()
            circuits = circuits_by_state()
        except DatabaseError as err:  # the counters are still worth having: these go missing
            logger.warning("metrics: the backlog could not be read: %s", err)
            return
        gauge = GaugeMetricFamily(
            "datapusher_destination_circuits",
            "Destinations whose circuit is open or half-open (probing) now, by state.",
            labels=["state"],
        )
        for state, destinations in circuits.items():
            gauge.add_metric([state], destinations)
        yield gauge
        age = 0.0 if oldest is None else max((timezone.now() - oldest).total_seconds(), 0.0)
        yield GaugeMetricFamily("datapusher_deliveries_pending", "Deliveries pending (not yet final).", count)
        yield GaugeMetricFamily(
            "datapusher_oldest_pending_delivery_age_seconds",
            "Seconds since the oldest pending delivery was created (0: none pending).",
            age,
        )


class _ProcessFiles:
    """The counts of every process that writes to `directory` or a subdirectory of it."""

    def __init__(self, directory: str) -> None:
        self.directory = directory

    def collect(self) -> Iterable[Metric]:
        files = glob.glob(os.path.join(self.directory, "**", "*.db"), recursive=True)
        return MultiProcessCollector.merge(sorted(files), accumulate=True)


class _ThisProcess:
    """The counts of this process alone (no PROMETHEUS_MULTIPROC_DIR), with its process metrics."""

    def collect(self) -> Iterable[Metric]:
        return REGISTRY.collect()


def metrics_response() -> HttpResponse:
    """Every metric in Prometheus' text format; reads the backlog from the database."""
    registry = CollectorRegistry(auto_describe=False)
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    registry.register(_ProcessFiles(directory) if directory else _ThisProcess())
    registry.register(_Backlog())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
