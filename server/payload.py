"""Parsing of the JSON object that upstream systems POST to /server/incoming_data."""

import json
import math
import re
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest


class InvalidPayload(ValueError):
    """The body is not a UTF-8 JSON object; the message says why, for the sender."""


class PayloadTooLarge(Exception):
    """The body is larger than DATA_UPLOAD_MAX_MEMORY_SIZE."""


class LengthRequired(Exception):
    """A chunked body the WSGI server passed on still chunked, so its end cannot be found."""


JSON_MEDIA_TYPE = "application/json"
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
READ_SIZE = 64 * 1024
_JSON_TYPES = {
    list: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}


def request_body(*, request: HttpRequest) -> bytes:
    """The request's body, also when it came with `Transfer-Encoding: chunked` (no Content-Length).

    Raises PayloadTooLarge above DATA_UPLOAD_MAX_MEMORY_SIZE, and LengthRequired for a chunked body
    the WSGI server did not de-chunk (Django's runserver): only a server that sets
    `wsgi.input_terminated` (gunicorn) ends wsgi.input where the body ends.
    """
    chunked = "chunked" in request.headers.get("Transfer-Encoding", "").lower()
    if request.META.get("CONTENT_LENGTH") or not chunked:
        try:
            return request.body
        except RequestDataTooBig as err:
            raise PayloadTooLarge from err
    if not request.META.get("wsgi.input_terminated"):
        raise LengthRequired
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    stream = request.META["wsgi.input"]
    body = bytearray()
    # Never more than one byte past the limit: enough to know it is exceeded.
    while limit is None or len(body) <= limit:
        piece = stream.read(READ_SIZE if limit is None else min(READ_SIZE, limit + 1 - len(body)))
        if not piece:
            return bytes(body)
        body += piece
    raise PayloadTooLarge


def _reject_constant(name: str) -> Any:
    raise InvalidPayload(f"{name} is not a JSON value")


def _parse_finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise InvalidPayload(f"the number {text} is out of range")
    return number


def _is_json_media_type(content_type: str) -> bool:
    return content_type in ("", JSON_MEDIA_TYPE) or (
        content_type.startswith("application/") and content_type.endswith("+json")
    )


def payload_parse(*, body: bytes, content_type: str, charset: str | None) -> tuple[str, dict[str, Any]]:
    """Return `body` decoded, and the JSON object it holds. Raises InvalidPayload for anything else.

    Anything else: a non-JSON Content-Type (form-encoded, multipart, text), a charset other than
    UTF-8, bytes that are not UTF-8, unparseable or empty text, NaN/Infinity, strings that are not
    Unicode text (lone surrogates), nesting too deep to parse, and JSON values that are not objects.
    """
    if not _is_json_media_type(content_type):
        raise InvalidPayload(f"Content-Type must be {JSON_MEDIA_TYPE}, not {content_type}.")
    if charset is not None and charset.lower() not in ("utf-8", "utf8"):
        raise InvalidPayload(f"The body must be UTF-8, not charset={charset}.")
    if not body:
        raise InvalidPayload("The body is empty: send a JSON object.")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InvalidPayload(f"The body is not UTF-8: {err.reason} at byte {err.start}.") from err
    return text, payload_loads(text=text)


def payload_loads(*, text: str) -> dict[str, Any]:
    """The JSON object in `text` (see payload_parse). Raises InvalidPayload."""
    try:
        data = json.loads(text, parse_constant=_reject_constant, parse_float=_parse_finite_float)
        # Lone surrogates parse (from \uD800-\uDFFF escapes, the only way UTF-8 text holds one) but
        # cannot be sent on as UTF-8: refuse them now, not mid-delivery. Only a body with such an
        # escape pays for encoding it all again to find out.
        if _SURROGATE_ESCAPE.search(text):
            json.dumps(data, ensure_ascii=False).encode("utf-8")
    except RecursionError as err:
        raise InvalidPayload("The body is not valid JSON: it is nested too deeply.") from err
    except UnicodeEncodeError as err:
        raise InvalidPayload("The body is not valid JSON: it escapes a lone surrogate (not text).") from err
    except ValueError as err:
        raise InvalidPayload(f"The body is not valid JSON: {err}.") from err
    if not isinstance(data, dict):
        raise InvalidPayload(f"The body must be a JSON object, not {_JSON_TYPES[type(data)]}.")
    return data
