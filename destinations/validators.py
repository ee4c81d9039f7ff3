import ipaddress
import re

from django.core.exceptions import ValidationError
from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

from destinations.addresses import address_allowed, literal_address

# RFC 9110 field-name: a token.
HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# RFC 9110 field-value: visible characters, spaces and tabs inside, no leading/trailing whitespace;
# latin-1 only (that is what goes on the wire). No CR, LF or NUL: those would inject headers.
HEADER_VALUE = re.compile(r"([!-~\x80-\xff]([\t !-~\x80-\xff]*[!-~\x80-\xff])?)?")
# Set by Data Pusher: every `webhook-*` header (Standard Webhooks' namespace: its signing headers and
# any it adds), and what the HTTP client derives from the request itself (a configured value would
# corrupt the framing).
RESERVED_HEADER_PREFIX = "webhook-"
RESERVED_HEADERS = frozenset(
    {
        "connection",
        "content-length",
        "host",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
MAX_HEADERS = 50
MAX_HEADER_VALUE_LENGTH = 8192


def validate_headers(value: object) -> None:
    """Headers must be a JSON object of header name -> string value, safe to send as is."""
    if not isinstance(value, dict):
        raise ValidationError("Headers must be a JSON object of header name to string value.")
    if len(value) > MAX_HEADERS:
        raise ValidationError(f"At most {MAX_HEADERS} headers are allowed.")
    seen: set[str] = set()
    for name, header_value in value.items():
        if not HEADER_NAME.fullmatch(name):
            raise ValidationError(f"{name!r} is not a valid header name.")
        if name.lower() in RESERVED_HEADERS or name.lower().startswith(RESERVED_HEADER_PREFIX):
            raise ValidationError(f"{name!r} is set by Data Pusher and cannot be configured.")
        if name.lower() in seen:
            raise ValidationError(f"Header {name!r} is given more than once.")
        seen.add(name.lower())
        if not isinstance(header_value, str):
            raise ValidationError(f"The value of header {name!r} must be a string.")
        if len(header_value) > MAX_HEADER_VALUE_LENGTH:
            raise ValidationError(f"The value of header {name!r} is too long.")
        if not HEADER_VALUE.fullmatch(header_value):
            raise ValidationError(
                f"The value of header {name!r} contains characters not allowed in a header "
                "(line breaks, control characters, leading or trailing whitespace)."
            )


def validate_destination_address(url: str) -> None:
    """Refuse, at configuration time, URLs whose host is a literal disallowed IP or localhost.

    Hostnames are checked again at connect time, after DNS, by the SSRF guard in server.http. The
    host is read with urllib3's parser, the one the deliveries are sent with, so it is the host the
    request goes to even where parsers disagree (`http://10.0.0.1\\@example.com/`).
    """
    try:
        host = (parse_url(url).host or "").strip("[]")  # urllib3 keeps an IPv6 address's brackets
    except LocationParseError:
        return  # not a URL at all: the URL validator refuses it
    if host.rstrip(".") == "localhost" or host.rstrip(".").endswith(".localhost"):
        address = ipaddress.ip_address("127.0.0.1")
    else:
        address = literal_address(host)
    if address is not None and not address_allowed(address):
        raise ValidationError(f"destination address not allowed: {host}")
