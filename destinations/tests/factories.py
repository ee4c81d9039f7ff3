import factory

from accounts.tests.factories import AccountFactory
from destinations.models import Destination


class DestinationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Destination

    account = factory.SubFactory(AccountFactory)
    url = factory.Sequence(lambda n: f"https://hooks.example.com/{n}")
    http_method = "POST"
    headers = factory.LazyFunction(lambda: {"APP_ID": "1234APPID1234"})
