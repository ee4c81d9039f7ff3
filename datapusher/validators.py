import re

from django.core.exceptions import ValidationError
from django.core.validators import URLValidator

BACKSLASH_MESSAGE = r"Enter a valid URL without a backslash (\); percent-encode it as %5C."


class HttpUrlValidator(URLValidator):
    """URLValidator that also refuses any backslash.

    Parsers disagree on a backslash: urllib.parse reads `http://evil.example\\@good.example/` as
    host good.example, urllib3 (which sends the deliveries) as host evil.example.
    """

    def __call__(self, value):
        if isinstance(value, str) and "\\" in value:
            raise ValidationError(BACKSLASH_MESSAGE, code="invalid")
        super().__call__(value)


# A rate in DRF's format, which django-ratelimit reads too: how many per second, minute, hour or day.
RATE = re.compile(r"[1-9][0-9]{0,8}/(s|sec|second|m|min|minute|h|hour|d|day)")
RATE_MESSAGE = 'Enter a rate such as "10/minute" or "5/second" (per second, minute, hour or day).'


def validate_rate(value: str) -> None:
    if not RATE.fullmatch(value):
        raise ValidationError(RATE_MESSAGE, code="invalid")


# Destinations and websites are web addresses: only http(s), never ftp, file, gopher...
http_url_validator = HttpUrlValidator(schemes=["http", "https"])
