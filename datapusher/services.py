from collections.abc import Callable, Iterable, Mapping
from typing import Any

from django.db import models


def model_update[M: models.Model](
    *,
    instance: M,
    fields: Iterable[str],
    data: Mapping[str, Any],
    save: Callable[[list[str]], object],
    by: Any = None,
) -> M:
    """Set those of `fields` present in `data` on `instance` and, if any value changed, call
    `save(update_fields)` with only those fields and `updated_at` (and `updated_by`, set to `by`,
    when a user is given); serves PUT and PATCH.

    Only the changed fields are written, so a concurrent write of another field (a token or secret
    rotated meanwhile) is never undone; the instance is then read back, so the caller answers with
    the row as stored. Returns the instance.
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
    if changed:
        if by is not None:
            instance.updated_by = by
            changed.append("updated_by")
        save([*changed, "updated_at"])
        instance.refresh_from_db()
    return instance
