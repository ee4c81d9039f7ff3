"""The project's URLs plus views that fail, for the error-answer tests (ROOT_URLCONF override)."""

from collections.abc import Callable

from django.db import OperationalError
from django.http import HttpRequest, HttpResponse
from django.urls import path
from rest_framework.decorators import api_view, authentication_classes, permission_classes
from rest_framework.permissions import AllowAny

from datapusher.urls import handler400, handler404, handler500
from datapusher.urls import urlpatterns as project_urlpatterns

__all__ = ["handler400", "handler404", "handler500", "urlpatterns"]


def raising(error: type[Exception], message: str) -> Callable[[HttpRequest], HttpResponse]:
    """A plain Django view that raises `error(message)`."""

    def view(request: HttpRequest) -> HttpResponse:
        raise error(message)

    return view


def api_raising(error: type[Exception], message: str) -> Callable[[HttpRequest], HttpResponse]:
    """A DRF view, open to anyone, that raises `error(message)`."""

    @api_view(["GET"])
    @authentication_classes([])
    @permission_classes([AllowAny])
    def view(request):
        raise error(message)

    return view


urlpatterns = [
    path("server/fail", raising(RuntimeError, "boom")),
    path("api/fail/", api_raising(RuntimeError, "boom")),
    path("fail/", raising(RuntimeError, "boom")),
    path("server/database-locked", raising(OperationalError, "database is locked")),
    path("api/database-locked/", api_raising(OperationalError, "database is locked")),
    path("database-locked/", raising(OperationalError, "database is locked")),
    *project_urlpatterns,
]
