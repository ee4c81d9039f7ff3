"""Standard Webhooks signing (https://www.standardwebhooks.com/): secrets and signatures."""

import base64
import hashlib
import hmac
import secrets

SECRET_PREFIX = "whsec_"  # noqa: S105 (the format prefix, not a secret)
SECRET_BYTES = 32


def generate_signing_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def sign(*, secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value: `v1,` + base64 HMAC-SHA256 of `{id}.{timestamp}.{body}`."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed_content = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed_content, hashlib.sha256).digest()).decode()


def signature(*, secrets: list[str], message_id: str, timestamp: int, content: bytes) -> str:
    """The `webhook-signature` value for one or more secrets (during a rotation's overlap): their
    signatures separated by spaces, as Standard Webhooks allows; a receiver accepts any of them."""
    return " ".join(
        sign(secret=secret, message_id=message_id, timestamp=timestamp, body=content) for secret in secrets
    )
