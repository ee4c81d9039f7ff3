"""Health, readiness and metrics for load balancers, orchestrators and Prometheus (docs/deployment.md).

/healthz and /readyz are open to anyone and say nothing but the state of each check; /metrics asks
for DATAPUSHER_METRICS_TOKEN, or without one answers only this host.
"""

import hmac
import ipaddress
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FuturesTimeout

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.http import require_safe

from server import broker
from server.metrics import metrics_response
from server.selectors import dispatcher_last_beat
from server.services.dispatch import heartbeat_stale_after

logger = logging.getLogger(__name__)

OK, UNAVAILABLE, UNKNOWN = "ok", "unavailable", "unknown"
NOT_CONFIGURED, NOT_RUNNING, STALE = "not configured", "not running", "stale"
# What a check may answer and still leave the process ready.
HEALTHY = {"database": {OK}, "broker": {OK, NOT_CONFIGURED}, "dispatcher": {OK, NOT_RUNNING}}


@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    """The process is up and answers requests; touches nothing else (not the database)."""
    return JsonResponse({"status": "ok"})


@require_safe
def readyz(request: HttpRequest) -> JsonResponse:
    """200 when this process can do its work: the database answers, the broker answers when one is
    configured, and a dispatcher that beats has beaten lately (with a broker one must); 503
    otherwise. Each check gets DATAPUSHER_READY_TIMEOUT seconds, all of them at once."""
    checks = _bounded({("database", "dispatcher"): _database_checks, ("broker",): _broker_check})
    # With a broker (queue mode, or sync mode's retries) every later attempt needs a dispatcher.
    ready = all(state in HEALTHY[name] for name, state in checks.items()) and not (
        broker.configured() and checks["dispatcher"] == NOT_RUNNING
    )
    body = {"status": "ready" if ready else "not ready", "checks": checks}
    return JsonResponse(body, status=200 if ready else 503)


@require_safe
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus' text format, for a scraper with the token (or on this host when none is set)."""
    token = settings.DATAPUSHER_METRICS_TOKEN
    if token:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            response = JsonResponse(
                {"detail": "Authorization: Bearer <DATAPUSHER_METRICS_TOKEN> required."}, status=401
            )
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return response
    elif not _from_this_host(request):
        return JsonResponse(
            {"detail": "Set DATAPUSHER_METRICS_TOKEN to scrape from another host."}, status=403
        )
    return metrics_response()


def _from_this_host(request: HttpRequest) -> bool:
    """The client is on loopback and no proxy stands in front (behind one, every client would be)."""
    if settings.REST_FRAMEWORK["NUM_PROXIES"]:
        return False
    try:
        return ipaddress.ip_address(request.META.get("REMOTE_ADDR", "")).is_loopback
    except ValueError:  # a Unix socket: no address
        return False


def _database_checks() -> dict[str, str]:
    """One query to see the database answer, one for the newest dispatcher heartbeat."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        last_beat = dispatcher_last_beat()
    finally:
        connection.close()  # this thread's own connection, made for the check
    if last_beat is None:
        return {"database": OK, "dispatcher": NOT_RUNNING}
    return {
        "database": OK,
        "dispatcher": OK if timezone.now() - last_beat <= heartbeat_stale_after() else STALE,
    }


def _broker_check() -> dict[str, str]:
    if not broker.configured():
        return {"broker": NOT_CONFIGURED}
    return {"broker": UNAVAILABLE if broker.queue_depth() is None else OK}


# Each group's check still running, if any: a probe waits on it rather than starting another, so a
# database or broker that stalls holds one thread per group in a process, however often it is asked.
_in_flight: dict[tuple[str, ...], Future] = {}
_in_flight_lock = threading.Lock()


def _started(names: tuple[str, ...], check: Callable[[], dict[str, str]]) -> Future:
    """The group's check: the one an earlier probe started, while it still runs, else a new one."""
    with _in_flight_lock:
        future = _in_flight.get(names)
        if future is None or future.done():
            future = _in_flight[names] = Future()
            thread = threading.Thread(
                target=_run, args=(check, future), name=f"readyz-{names[0]}", daemon=True
            )
            thread.start()
        return future


def _bounded(groups: dict[tuple[str, ...], Callable[[], dict[str, str]]]) -> dict[str, str]:
    """Run each group of checks on a thread of its own, all at once, and wait for them until
    DATAPUSHER_READY_TIMEOUT has passed: a group that failed or had not answered by then is
    "unavailable" (the dispatcher, which the database tells, "unknown"). A thread still waiting is
    left to end when its own timeouts end it, and the next probes wait on it (_started)."""
    started = [(names, _started(names, check)) for names, check in groups.items()]
    deadline = time.monotonic() + settings.DATAPUSHER_READY_TIMEOUT
    checks: dict[str, str] = {}
    for names, future in started:
        try:
            checks.update(future.result(timeout=max(deadline - time.monotonic(), 0)))
        except Exception as err:
            reason = (
                f"no answer within {settings.DATAPUSHER_READY_TIMEOUT:g}s"
                if isinstance(err, FuturesTimeout)
                else f"{type(err).__name__}: {err}"
            )
            logger.warning("readiness: %s check failed (%s)", names[0], reason)
            checks.update({name: UNKNOWN if name == "dispatcher" else UNAVAILABLE for name in names})
    return {name: checks[name] for name in ("database", "broker", "dispatcher")}


def _run(check: Callable[[], dict[str, str]], future: Future) -> None:
    try:
        future.set_result(check())
    except Exception as err:
        future.set_exception(err)
