"""Helpers shared by the server tests."""

import http.client
import json
import re
import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from textwrap import dedent
from typing import Any
from urllib.parse import urlsplit

from django.db import connection
from django.utils import timezone

from destinations.tests.factories import DestinationFactory
from server.models import Delivery, Event
from server.tests.conftest import ROOT

INGEST_URL = "/server/incoming_data"
# Why a receiver's answer disabled its destination (server.http.OutboundResponse.disables).
GONE = "the destination answered 410 Gone"
ASKED = "the destination asked to be disabled (webhook-delivery: disable)"


def ingest(
    client,
    account,
    body: bytes | str = b'{"a": 1}',
    *,
    event_id: str | None = None,
    content_type: str = "application/json",
    **extra,
):
    """POST `body` to the ingest with the account's token (and a CL-X-EVENT-ID when given)."""
    headers = {"CL-X-TOKEN": account.app_secret_token}
    if event_id is not None:
        headers["CL-X-EVENT-ID"] = event_id
    return client.post(INGEST_URL, body, content_type=content_type, headers=headers, **extra)


def answer(status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> Callable:
    """A receiver's `respond`: this status, these headers and this body."""

    def respond(handler):
        handler.send_response(status)
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    return respond


def pending_delivery(*, destination=None, **fields) -> Delivery:
    """A pending delivery of a fresh event to `destination` (by default a fresh POST destination at
    https://h.example.com/), due now unless `fields` say otherwise."""
    destination = destination or DestinationFactory(url="https://h.example.com/")
    event = Event.objects.create(account=destination.account, body='{"a": 1}')
    fields.setdefault("next_attempt_at", timezone.now())
    return Delivery.objects.create(
        event=event, destination=destination, url=destination.url, http_method="POST", **fields
    )


def a_delivery(destination, *, status="failed", at=None, external_id=None, **fields) -> Delivery:
    """A delivery of a fresh event of the destination's account, created `at` (now by default)."""
    at = at or timezone.now()
    event = Event.objects.create(
        account=destination.account, body='{"a": 1}', received_at=at, external_id=external_id
    )
    return Delivery.objects.create(
        event=event,
        destination=destination,
        url=destination.url,
        http_method=destination.http_method,
        status=status,
        created_at=at,
        **fields,
    )


def run_action(admin_client, url, action, objects):
    """Run a list action on `objects` and return the message shown after it."""
    response = admin_client.post(
        url, {"action": action, "_selected_action": [str(o.pk) for o in objects]}, follow=True
    )
    assert response.status_code == 200
    return [str(m) for m in response.context["messages"]]


@dataclass
class HttpAnswer:
    status: int
    headers: http.client.HTTPMessage
    json: Any


def http_exchange(
    base_url: str,
    method: str,
    path: str,
    *,
    headers: dict[str, str],
    body: bytes | Iterable[bytes] | None = None,
) -> tuple[int, http.client.HTTPMessage, bytes]:
    """One request to a real server: (status, headers, body); an iterable body is sent chunked."""
    address = urlsplit(base_url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=30)
    try:
        chunked = body is not None and not isinstance(body, bytes)
        connection.request(method, path, body=body, headers=headers, encode_chunked=chunked)
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


def http_call(*args: Any, **kwargs: Any) -> HttpAnswer:
    """http_exchange's request, to a server that answers in JSON."""
    status, headers, answer = http_exchange(*args, **kwargs)
    return HttpAnswer(status, headers, json.loads(answer))


def at_once(call: Callable[[], Any], times: int = 2) -> list[Any]:
    """Run `call` in `times` threads released at the same instant, each on its own database
    connection; returns their results (in the order they finished)."""
    barrier = threading.Barrier(times)
    results = []

    def run():
        try:
            barrier.wait()
            results.append(call())
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(times)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# A fenced block, also indented (in a list item).
FENCE = re.compile(
    r"^[ \t]*```(?P<language>[^\n`]*)\n(?P<code>.*?)^[ \t]*```[ \t]*$", re.MULTILINE | re.DOTALL
)


@dataclass(frozen=True)
class Block:
    doc: Path
    line: int
    language: str
    code: str

    @property
    def where(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"


def fenced_blocks(doc: Path) -> list[Block]:
    """The fenced code blocks of a Markdown file, in order."""
    text = doc.read_text()
    return [
        Block(doc, text.count("\n", 0, match.start()) + 1, match["language"].strip(), dedent(match["code"]))
        for match in FENCE.finditer(text)
    ]
