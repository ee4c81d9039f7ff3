"""Helpers shared by the server tests."""

INGEST_URL = "/server/incoming_data"


def ingest(
    client,
    account,
    body: bytes | str = b'{"a": 1}',
    *,
    event_id: str | None = None,
    content_type: str = "application/json",
    **extra,
):
    """POST `body` to the ingest with the account's token (and a CL-X-EVENT-ID when given)."""
    headers = {"CL-X-TOKEN": account.app_secret_token}
    if event_id is not None:
        headers["CL-X-EVENT-ID"] = event_id
    return client.post(INGEST_URL, body, content_type=content_type, headers=headers, **extra)
