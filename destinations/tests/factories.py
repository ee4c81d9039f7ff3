import factory

from accounts.tests.factories import AccountFactory
from destinations.models import Destination
from destinations.services import destination_update


class DestinationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Destination

    account = factory.SubFactory(AccountFactory)
    url = factory.Sequence(lambda n: f"https://hooks.example.com/{n}")
    http_method = "POST"
    headers = factory.LazyFunction(lambda: {"APP_ID": "1234APPID1234"})

    @classmethod
    def _create(cls, model_class, *args, auth=None, **kwargs):
        """With `auth` (as the API takes it), stored as the API stores it: its secret encrypted."""
        destination = super()._create(model_class, *args, **kwargs)
        if auth is not None:
            account = destination.account  # with the app secret token the factory left on it
            destination_update(destination=destination, data={"auth": auth})
            destination.account = account
        return destination
