"""Error answers in the language of each part of the site: the ingest (/server/) answers its own
JSON, the REST API (/api/) DRF's JSON, everything else (admin, /) Django's HTML pages."""

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from rest_framework import exceptions

INGEST_PREFIX = "/server/"
API_PREFIX = "/api/"


def is_ingest(request: HttpRequest) -> bool:
    return _is_under(request, INGEST_PREFIX)


def is_api(request: HttpRequest) -> bool:
    return _is_under(request, API_PREFIX)


def _is_under(request: HttpRequest, prefix: str) -> bool:
    return request.path_info.startswith(prefix) or request.path_info == prefix.rstrip("/")


def ingest_error(*, status: int, message: str, **extra: str) -> JsonResponse:
    """The ingest's error shape: {"success": false, "message": ..., **extra}."""
    return JsonResponse({"success": False, "message": message, **extra}, status=status)


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """handler404."""
    if is_ingest(request):
        return ingest_error(status=404, message="Not Found")
    if is_api(request):
        return JsonResponse({"detail": str(exceptions.NotFound.default_detail)}, status=404)
    return defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500."""
    if is_ingest(request):
        return ingest_error(status=500, message="Server Error")
    if is_api(request):
        return exceptions.server_error(request)
    return defaults.server_error(request)
