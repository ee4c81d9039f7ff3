import logging
from collections.abc import Callable

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse

from datapusher.errors import ingest_error, is_api, is_ingest

logger = logging.getLogger(__name__)

# Seconds a client is asked to wait before trying again when the database is unavailable.
DATABASE_RETRY_AFTER_SECONDS = 5
SERVICE_UNAVAILABLE = "Service Unavailable"


class DatabaseUnavailableMiddleware:
    """Answer 503 with Retry-After, not 500, when the database cannot be reached or used.

    OperationalError and InterfaceError: refused or timed-out connections, a dropped connection,
    SQLite's "database is locked". DRF views re-raise them (its handler does not know them), so they
    arrive here like any view's exception.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, OperationalError | InterfaceError):
            return None
        logger.warning("Database unavailable, answering 503 to %s: %s", request.path, exception)
        if is_ingest(request):
            response = ingest_error(status=503, message=SERVICE_UNAVAILABLE)
        elif is_api(request):
            response = JsonResponse({"detail": SERVICE_UNAVAILABLE}, status=503)
        else:
            response = HttpResponse(SERVICE_UNAVAILABLE, status=503, content_type="text/plain; charset=utf-8")
        response["Retry-After"] = str(DATABASE_RETRY_AFTER_SECONDS)
        return response
