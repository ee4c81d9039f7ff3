"""All outbound HTTP to destinations goes through here; nothing else imports `requests`.

One shared `requests.Session` (connection pooling) with a User-Agent naming the product, the
connect/read timeouts from settings on every request, redirects never followed, and the errors of
`requests` wrapped in the product's own exception types.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass

import requests
from django.conf import settings
from requests.structures import CaseInsensitiveDict

from datapusher import __version__

USER_AGENT = f"DataPusher/{__version__}"


class OutboundError(Exception):
    """A request to a destination that produced no HTTP response."""


class OutboundTimeout(OutboundError):
    pass


class OutboundConnectionError(OutboundError):
    pass


@dataclass(frozen=True)
class OutboundResponse:
    status_code: int


def _build_session() -> requests.Session:
    session = requests.Session()
    session.headers = CaseInsensitiveDict({"User-Agent": USER_AGENT})
    # No proxies or .netrc credentials picked up from the environment: a destination is
    # user-supplied, and must never receive credentials it was not configured with.
    session.trust_env = False
    return session


_session = _build_session()


def _root_cause(err: BaseException) -> str:
    """The innermost reason of a requests/urllib3 error, without urllib3's connection repr."""
    reason: BaseException = err
    while True:
        inner = getattr(reason, "reason", None) or (reason.args[0] if reason.args else None)
        if not isinstance(inner, BaseException):
            break
        reason = inner
    return re.sub(r"^HTTPS?Connection\(.*?\): ", "", str(reason))


def send(
    *,
    method: str,
    url: str,
    headers: dict[str, str],
    params: Sequence[tuple[str, str]] = (),
    body: bytes | None = None,
) -> OutboundResponse:
    """Send one request and return its status. Raises OutboundError when there is no response."""
    connect_timeout = settings.DATAPUSHER_CONNECT_TIMEOUT
    read_timeout = settings.DATAPUSHER_READ_TIMEOUT
    try:
        response = _session.request(
            method,
            url,
            headers=headers,
            params=params,
            data=body,
            timeout=(connect_timeout, read_timeout),
            allow_redirects=False,
            stream=True,
        )
    except requests.ConnectTimeout as err:
        raise OutboundTimeout(f"connect timed out after {connect_timeout:g}s") from err
    except requests.ReadTimeout as err:
        raise OutboundTimeout(f"read timed out after {read_timeout:g}s") from err
    except requests.ConnectionError as err:
        raise OutboundConnectionError(f"connection failed: {_root_cause(err)}") from err
    except requests.RequestException as err:
        raise OutboundError(f"request failed: {_root_cause(err)}") from err
    # The body is not used; closing without reading it keeps a huge response out of memory.
    response.close()
    return OutboundResponse(status_code=response.status_code)
