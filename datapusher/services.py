from collections.abc import Iterable, Mapping
from typing import Any

from django.db import models


def model_update(*, instance: models.Model, fields: Iterable[str], data: Mapping[str, Any]) -> None:
    """Set those of `fields` present in `data` on `instance` (not saved). Serves PUT and PATCH."""
    for field in fields:
        if field in data:
            setattr(instance, field, data[field])
