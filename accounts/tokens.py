import secrets

# 32 random bytes (256 bits) rendered URL-safe: 43 characters.
APP_SECRET_TOKEN_BYTES = 32


def generate_app_secret_token() -> str:
    return secrets.token_urlsafe(APP_SECRET_TOKEN_BYTES)
