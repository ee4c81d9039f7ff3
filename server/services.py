"""Pushing an account's incoming data to its destinations."""

import json
import logging
from dataclasses import asdict, dataclass
from typing import Any, Literal

from accounts.models import Account
from destinations.models import Destination
from server import http

logger = logging.getLogger(__name__)

# Methods whose request carries the data as query parameters instead of a body.
QUERY_METHODS = frozenset({"GET", "DELETE"})


@dataclass(frozen=True)
class DeliveryResult:
    destination_id: int
    url: str
    http_method: str
    status: Literal["succeeded", "failed"]
    status_code: int | None
    error: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def query_params(data: dict[str, Any]) -> list[tuple[str, str]]:
    """Top-level keys as query parameters: strings as is, any other value as compact JSON text."""
    return [
        (
            key,
            value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), ensure_ascii=False),
        )
        for key, value in data.items()
    ]


def destination_deliver(*, destination: Destination, body: bytes, data: dict[str, Any]) -> DeliveryResult:
    """Send the data to one destination; any failure is returned as a `failed` result, never raised."""
    headers = dict(destination.headers)
    if destination.http_method in QUERY_METHODS:
        params, request_body = query_params(data), None
    else:
        params, request_body = [], body
        if not any(name.lower() == "content-type" for name in headers):
            headers["Content-Type"] = "application/json"
    result = dict(destination_id=destination.id, url=destination.url, http_method=destination.http_method)
    try:
        response = http.send(
            method=destination.http_method,
            url=destination.url,
            headers=headers,
            params=params,
            body=request_body,
        )
    except http.OutboundError as err:
        logger.warning("delivery to destination %s failed: %s", destination.id, err)
        return DeliveryResult(**result, status="failed", status_code=None, error=str(err))
    if 200 <= response.status_code < 300:
        return DeliveryResult(**result, status="succeeded", status_code=response.status_code, error=None)
    logger.warning("delivery to destination %s answered HTTP %s", destination.id, response.status_code)
    return DeliveryResult(
        **result,
        status="failed",
        status_code=response.status_code,
        error=f"destination answered HTTP {response.status_code}",
    )


def incoming_data_push(*, account: Account, body: bytes, data: dict[str, Any]) -> list[DeliveryResult]:
    """Deliver `data` (received as `body`) to every destination of `account`; one result each."""
    return [
        destination_deliver(destination=destination, body=body, data=data)
        for destination in account.destinations.all()
    ]
