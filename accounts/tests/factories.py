import factory

from accounts.models import Account


class AccountFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Account

    email = factory.Sequence(lambda n: f"owner{n}@example.com")
    account_name = factory.Sequence(lambda n: f"Account {n}")
    website = "https://example.com"
