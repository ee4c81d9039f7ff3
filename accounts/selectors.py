from accounts.models import Account


def account_get_by_token(*, token: str) -> Account | None:
    """The account whose app secret token is `token`, or None (also for an empty token)."""
    if not token:
        return None
    return Account.objects.filter(app_secret_token=token).first()
