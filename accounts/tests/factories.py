import factory

from accounts.models import Account


class AccountFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Account

    email = factory.Sequence(lambda n: f"owner{n}@example.com")
    account_name = factory.Sequence(lambda n: f"Account {n}")
    website = "https://example.com"

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        """Saved with a token of its own, left on `app_secret_token` for the tests to send."""
        account = model_class(*args, **kwargs)
        account.new_app_secret_token()
        account.save()
        return account
