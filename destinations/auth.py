"""Destination credentials (`auth`): the types, the fields each one takes, and its one secret
(password, token or client secret) encrypted at rest with DATAPUSHER_ENCRYPTION_KEYS (Fernet)."""

import functools

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.db import models


class AuthType(models.TextChoices):
    NONE = "none"
    BASIC = "basic"
    BEARER = "bearer"
    OAUTH2_CLIENT_CREDENTIALS = "oauth2_client_credentials"


# Per type: the readable fields it needs, those it may have, and the field of its write-only secret.
REQUIRED_FIELDS = {
    AuthType.NONE: (),
    AuthType.BASIC: ("username",),
    AuthType.BEARER: (),
    AuthType.OAUTH2_CLIENT_CREDENTIALS: ("token_url", "client_id"),
}
OPTIONAL_FIELDS = {AuthType.OAUTH2_CLIENT_CREDENTIALS: ("scope",)}
SECRET_FIELD = {
    AuthType.BASIC: "password",
    AuthType.BEARER: "token",
    AuthType.OAUTH2_CLIENT_CREDENTIALS: "client_secret",
}
SECRET_FIELDS = frozenset(SECRET_FIELD.values())


def auth_none() -> dict[str, str]:
    return {"type": AuthType.NONE.value}


class CredentialsUnavailable(Exception):
    """No key to encrypt credentials with, or none of the keys decrypts the stored ones."""


@functools.cache
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key) for key in keys])


def _keys() -> MultiFernet:
    if not settings.DATAPUSHER_ENCRYPTION_KEYS:
        raise CredentialsUnavailable("DATAPUSHER_ENCRYPTION_KEYS is not set")
    return _fernet(tuple(settings.DATAPUSHER_ENCRYPTION_KEYS))


def secret_encrypt(secret: str) -> str:
    """`secret` encrypted with the first key. Raises CredentialsUnavailable without a key."""
    return _keys().encrypt(secret.encode()).decode()


def _key_operation(operation: str, encrypted: str) -> str:
    try:
        return getattr(_keys(), operation)(encrypted.encode()).decode()
    except InvalidToken:
        raise CredentialsUnavailable(
            "no key of DATAPUSHER_ENCRYPTION_KEYS decrypts the stored credentials"
        ) from None


def secret_decrypt(encrypted: str) -> str:
    """The secret `encrypted` holds. Raises CredentialsUnavailable when no key decrypts it."""
    return _key_operation("decrypt", encrypted)


def secret_reencrypt(encrypted: str) -> str:
    """The same secret encrypted with the first key. Raises CredentialsUnavailable when no key decrypts it."""
    return _key_operation("rotate", encrypted)
