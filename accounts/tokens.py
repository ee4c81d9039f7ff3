import hashlib
import secrets

# 32 random bytes (256 bits) rendered URL-safe: 43 characters.
APP_SECRET_TOKEN_BYTES = 32
# How much of a token the API and the admin show, to recognise it by.
APP_SECRET_TOKEN_PREFIX_LENGTH = 8


def generate_app_secret_token() -> str:
    return secrets.token_urlsafe(APP_SECRET_TOKEN_BYTES)


def app_secret_token_hash(token: str) -> str:
    """What the database keeps of a token: its SHA-256, in hex. A token is 256 random bits, so a
    fast hash is enough (no guessing to slow down); ingest looks the account up by it."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def unknown_app_secret_token_hash() -> str:
    """The hash of a token nobody is told: for an account made without one (rotate to get one)."""
    return app_secret_token_hash(generate_app_secret_token())
