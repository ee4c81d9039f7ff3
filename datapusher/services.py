from collections.abc import Iterable, Mapping
from typing import Any

from django.db import models


def model_update(*, instance: models.Model, fields: Iterable[str], data: Mapping[str, Any]) -> list[str]:
    """Set those of `fields` present in `data` on `instance` (not saved). Serves PUT and PATCH.

    Returns the names of the fields whose value changed, for `save(update_fields=...)`.
    """
    changed = []
    for name in fields:
        if name not in data:
            continue
        field = instance._meta.get_field(name)
        before = field.value_from_object(instance)
        setattr(instance, name, data[name])
        if field.value_from_object(instance) != before:
            changed.append(name)
    return changed
