"""The ingest's log line: one INFO line per request to /server/incoming_data, whatever its answer."""

import functools
import logging
import time
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse

logger = logging.getLogger("server.ingest")


def ingest_note(request: HttpRequest, **fields: Any) -> None:
    """Add what the view learnt (the account, the event) to the request's line."""
    request.__dict__.setdefault("_ingest_line", {}).update(fields)


def ingest_logged(view: Callable[[HttpRequest], HttpResponse]) -> Callable[[HttpRequest], HttpResponse]:
    """Log the ingest once it is answered: event id, account id, number of destinations (None when
    nothing was stored), HTTP status and duration. A view that raises is logged with status None
    (the middleware answers it)."""

    @functools.wraps(view)
    def logged(request: HttpRequest) -> HttpResponse:
        clock = time.monotonic()
        status = None
        try:
            response = view(request)
            status = response.status_code
            return response
        finally:
            line = {"event_id": None, "account_id": None, "destinations": None}
            line.update(request.__dict__.get("_ingest_line", {}))
            logger.info(
                "ingest",
                extra={**line, "status": status, "duration_ms": round((time.monotonic() - clock) * 1000)},
            )

    return logged
