from django.core.validators import URLValidator
from rest_framework import serializers

from datapusher.validators import http_url_validator


class HttpUrlField(serializers.URLField):
    """An absolute http(s) URL (DRF's URLField also admits ftp)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.validators = [v for v in self.validators if not isinstance(v, URLValidator)]
        self.validators.append(http_url_validator)
