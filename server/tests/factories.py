import factory
from django.utils import timezone

from server.models import DispatcherHeartbeat


class DispatcherHeartbeatFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = DispatcherHeartbeat

    name = factory.Sequence(lambda n: f"dispatcher-host:{1000 + n}")
    beat_at = factory.LazyFunction(timezone.now)
