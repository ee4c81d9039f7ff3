"""Log lines, as JSON objects (DATAPUSHER_LOG_FORMAT=json) or readable text, each carrying the id of
the request it belongs to: django-guid's, taken from a valid X-Request-ID or generated, and in a
worker the id of the ingest whose delivery it sends (request_id_bound)."""

import contextlib
import logging
import re
from collections.abc import Callable, Iterator

from django.http import HttpRequest, HttpResponse
from django_guid.context import guid
from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

REQUEST_ID_FIELD = "request_id"
# Record attributes never written as a line's own fields: the standard ones, and the request object
# Django's request and server loggers attach (it prints as the full URL, query string included).
_OMITTED = [*RESERVED_ATTRS, "request"]
_NOT_FIELDS = frozenset({*_OMITTED, REQUEST_ID_FIELD})


class _JsonFormatter(JsonFormatter):
    def add_fields(self, log_data: dict, record: logging.LogRecord, message_dict: dict) -> None:
        log_data["timestamp"] = None  # first in the line; python-json-logger sets it last
        super().add_fields(log_data, record, message_dict)


def json_formatter() -> JsonFormatter:
    """One JSON object a line: timestamp (UTC, ISO 8601), level, logger, message, request_id, then
    the line's own fields."""
    return _JsonFormatter(
        ["levelname", "name", "message", REQUEST_ID_FIELD],
        rename_fields={"levelname": "level", "name": "logger"},
        reserved_attrs=_OMITTED,
        timestamp=True,
    )


class TextFormatter(logging.Formatter):
    """A readable line for `make run` and the tests: time, level, [request id], logger, message, and
    the line's own fields as key=value."""

    def __init__(self) -> None:
        super().__init__(
            "%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s", defaults={"request_id": None}
        )

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        fields = " ".join(f"{k}={v}" for k, v in vars(record).items() if k not in _NOT_FIELDS)
        return f"{line} {fields}" if fields else line


# An X-Request-ID kept as given: a UUID as 32 hex digits or in its 36-character form, nothing else
# (django-guid's own check, uuid.UUID(), also takes braces, "urn:uuid:" and any number of hyphens).
REQUEST_ID = re.compile(r"[0-9a-fA-F]{32}|[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")
REQUEST_ID_META = "HTTP_X_REQUEST_ID"


def request_id_checked(get_response: Callable[[HttpRequest], HttpResponse]) -> Callable:
    """Middleware before django-guid's: an X-Request-ID that is not a plain UUID is dropped, so
    that a new id is made; a stored, echoed and logged id is never longer than 36 characters."""

    def middleware(request: HttpRequest) -> HttpResponse:
        given = request.META.get(REQUEST_ID_META)
        if given is not None and not REQUEST_ID.fullmatch(given):
            del request.META[REQUEST_ID_META]
        return get_response(request)

    return middleware


def current_request_id() -> str | None:
    """The request id of what this thread is doing now, if any."""
    return guid.get()


@contextlib.contextmanager
def request_id_bound(request_id: str | None) -> Iterator[None]:
    """Lines logged inside carry `request_id` (a worker sending an ingest's delivery); on leaving,
    whatever was bound before is back."""
    token = guid.set(request_id or None)
    try:
        yield
    finally:
        guid.reset(token)
