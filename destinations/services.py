from collections.abc import Mapping
from typing import Any

from accounts.models import Account
from datapusher.services import model_update
from destinations.models import Destination

DESTINATION_EDITABLE_FIELDS = ("account", "url", "http_method", "headers")


def _destination_save(*, destination: Destination) -> Destination:
    destination.full_clean()
    destination.save()
    return destination


def destination_create(
    *, account: Account, url: str, http_method: str, headers: dict[str, str]
) -> Destination:
    """Create a destination for `account`. Raises ValidationError on an invalid field."""
    destination = Destination(account=account, url=url, http_method=http_method, headers=headers)
    return _destination_save(destination=destination)


def destination_update(*, destination: Destination, data: Mapping[str, Any]) -> Destination:
    """Update the editable fields present in `data`. Raises ValidationError on an invalid field."""
    model_update(instance=destination, fields=DESTINATION_EDITABLE_FIELDS, data=data)
    return _destination_save(destination=destination)


def destination_delete(*, destination: Destination) -> None:
    destination.delete()
