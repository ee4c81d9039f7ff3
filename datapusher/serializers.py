from django.core.validators import URLValidator
from rest_framework import serializers

from datapusher.validators import http_url_validator


class HttpUrlField(serializers.URLField):
    """An absolute http(s) URL (DRF's URLField also admits ftp)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        others = [v for v in self.validators if not isinstance(v, URLValidator)]
        self.validators = [http_url_validator, *others]


class KnownFieldsOnly:
    """A serializer mixin: a field it does not have is a 400 naming it ("Unknown field."), not ignored."""

    def to_internal_value(self, data):
        unknown = sorted(set(data) - set(self.fields)) if isinstance(data, dict) else []
        if unknown:
            raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)
