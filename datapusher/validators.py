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


# Destinations and websites are web addresses: only http(s), never ftp, file, gopher...
http_url_validator = HttpUrlValidator(schemes=["http", "https"])
