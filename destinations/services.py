from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db.models import F
from django.utils import timezone

from accounts.models import Account
from datapusher.services import model_update
from destinations.auth import (
    SECRET_FIELD,
    CredentialsUnavailable,
    auth_none,
    secret_encrypt,
    secret_reencrypt,
)
from destinations.models import Destination
from destinations.signing import generate_signing_secret

DESTINATION_EDITABLE_FIELDS = (
    "account",
    "url",
    "http_method",
    "headers",
    "auth",
    "auth_secret",
    "enabled",
    "rate_limit",
    "max_in_flight",
)


def _auth_stored(*, auth: Mapping[str, str]) -> dict[str, Any]:
    """The model fields of a validated `auth`: its readable part, and its secret encrypted.
    Raises ValidationError when there is a secret and no key to encrypt it with."""
    secret_field = SECRET_FIELD.get(auth["type"])
    readable = {name: value for name, value in auth.items() if name != secret_field}
    if secret_field is None:
        return {"auth": readable, "auth_secret": ""}
    try:
        return {"auth": readable, "auth_secret": secret_encrypt(auth[secret_field])}
    except CredentialsUnavailable as err:
        raise ValidationError({"auth": f"Credentials cannot be stored: {err}."}) from None


def _destination_save(*, destination: Destination, update_fields: list[str] | None = None) -> Destination:
    destination.full_clean()
    destination.save(update_fields=update_fields)
    return destination


def destination_create(
    *,
    account: Account,
    url: str,
    http_method: str,
    headers: dict[str, str],
    auth: Mapping[str, str] | None = None,
    enabled: bool = True,
    rate_limit: float | None = None,
    max_in_flight: int | None = None,
    by: AbstractBaseUser | None = None,
) -> Destination:
    """Create a destination for `account`, its `auth` secret encrypted (disabled if not `enabled`:
    its deliveries are kept paused), with its limits (None: none). Raises ValidationError on an
    invalid field, or on credentials without DATAPUSHER_ENCRYPTION_KEYS."""
    destination = Destination(
        account=account,
        url=url,
        http_method=http_method,
        headers=headers,
        **_auth_stored(auth=auth or auth_none()),
        enabled=enabled,
        rate_limit=rate_limit,
        max_in_flight=max_in_flight,
        created_by=by,
        updated_by=by,
    )
    return _destination_save(destination=destination)


def destination_update(
    *, destination: Destination, data: Mapping[str, Any], by: AbstractBaseUser | None = None
) -> Destination:
    """Update the editable fields present in `data` (an `auth` replaces the one stored, secret
    included); setting `enabled` clears disabled_reason (the paused backlog is sent by resuming,
    server.services.lifecycle). Raises ValidationError on an invalid field, or on credentials without
    a key."""
    if "auth" in data:
        data = {**data, **_auth_stored(auth=data["auth"])}
    if "enabled" in data:
        data = {**data, "disabled_reason": ""}
    return model_update(
        instance=destination,
        fields=(*DESTINATION_EDITABLE_FIELDS, "disabled_reason"),
        data=data,
        by=by,
        save=lambda update_fields: _destination_save(destination=destination, update_fields=update_fields),
    )


def destination_delete(*, destination: Destination) -> None:
    destination.delete()


def destination_disable(*, destination_id: int, reason: str) -> bool:
    """Turn an enabled destination off on the system's behalf, saying why (one conditional UPDATE).
    True if this call turned it off; False if it was off already, or deleted."""
    return bool(
        Destination.objects.filter(pk=destination_id, enabled=True).update(
            enabled=False,
            disabled_reason=reason[: Destination._meta.get_field("disabled_reason").max_length],
            updated_at=timezone.now(),
        )
    )


def destination_rotate_secret(*, destination: Destination, by: AbstractBaseUser | None = None) -> Destination:
    """Give the destination a new signing secret; deliveries are signed with it from now on, and
    with the one it replaces for DATAPUSHER_SECRET_ROTATION_OVERLAP seconds more. The replaced
    secret is the one stored when this writes (two rotations at once keep both new secrets' order).
    Returns the destination as stored."""
    now = timezone.now()
    Destination.objects.filter(pk=destination.pk).update(
        previous_signing_secret=F("signing_secret"),
        previous_secret_expires_at=now + timedelta(seconds=settings.DATAPUSHER_SECRET_ROTATION_OVERLAP),
        signing_secret=generate_signing_secret(),
        updated_at=now,
        updated_by=by,
    )
    destination.refresh_from_db()
    return destination


def destination_credentials_reencrypt() -> tuple[int, list[int]]:
    """Encrypt every stored credential again with the first of DATAPUSHER_ENCRYPTION_KEYS, so that
    the keys after it can then be removed. Each row is rewritten only if its secret is still the one
    read (a credential saved meanwhile is already under the first key). Returns how many were
    rewritten, and the ids of the destinations whose credentials no key decrypts (left as they are)."""
    rewritten, undecryptable = 0, []
    stored = Destination.objects.exclude(auth_secret="").values_list("pk", "auth_secret")
    for pk, encrypted in stored.iterator():
        try:
            reencrypted = secret_reencrypt(encrypted)
        except CredentialsUnavailable:
            undecryptable.append(pk)
            continue
        rewritten += Destination.objects.filter(pk=pk, auth_secret=encrypted).update(auth_secret=reencrypted)
    return rewritten, undecryptable
