"""Parsing of the JSON object that upstream systems POST to /server/incoming_data."""

import json
import math
from typing import Any


class InvalidPayload(ValueError):
    """The body is not a UTF-8 JSON object."""


JSON_MEDIA_TYPE = "application/json"


def _reject_constant(name: str) -> Any:
    raise InvalidPayload(f"{name} is not valid JSON")


def _parse_finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise InvalidPayload(f"{text} is out of range")
    return number


def _is_json_media_type(content_type: str) -> bool:
    return content_type in ("", JSON_MEDIA_TYPE) or (
        content_type.startswith("application/") and content_type.endswith("+json")
    )


def payload_parse(*, body: bytes, content_type: str, charset: str | None) -> dict[str, Any]:
    """Return the JSON object in `body`. Raises InvalidPayload for anything else.

    Anything else: a non-JSON Content-Type (form-encoded, multipart, text), a charset other than
    UTF-8, bytes that are not UTF-8, unparseable or empty text, NaN/Infinity, strings that are not
    Unicode text (lone surrogates), nesting too deep to parse, and JSON values that are not objects.
    """
    if not _is_json_media_type(content_type):
        raise InvalidPayload(f"Content-Type {content_type} is not JSON")
    if charset is not None and charset.lower() not in ("utf-8", "utf8"):
        raise InvalidPayload(f"charset {charset} is not UTF-8")
    try:
        data = json.loads(
            body.decode("utf-8"),
            parse_constant=_reject_constant,
            parse_float=_parse_finite_float,
        )
        # Lone surrogates parse but cannot be sent on as UTF-8; refuse them now, not mid-delivery.
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except (ValueError, RecursionError) as err:
        raise InvalidPayload(str(err)) from err
    if not isinstance(data, dict):
        raise InvalidPayload("the JSON value is not an object")
    return data
