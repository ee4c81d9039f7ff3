import factory
from django.utils import timezone

from accounts.tests.factories import AccountFactory
from destinations.tests.factories import DestinationFactory
from server.models import Attempt, Delivery, DispatcherHeartbeat, Event


class EventFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Event

    account = factory.SubFactory(AccountFactory)
    body = '{"a": 1}'


class DeliveryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Delivery

    destination = factory.SubFactory(DestinationFactory)
    event = factory.SubFactory(EventFactory, account=factory.SelfAttribute("..destination.account"))
    url = factory.SelfAttribute("destination.url")
    http_method = factory.SelfAttribute("destination.http_method")


class AttemptFactory(factory.django.DjangoModelFactory):
    """A successful attempt; give `error` (and a status code) for a failed one."""

    class Meta:
        model = Attempt

    delivery = factory.SubFactory(DeliveryFactory)
    destination = factory.SelfAttribute("delivery.destination")
    status_code = 200
    duration_ms = 100
    started_at = factory.LazyFunction(timezone.now)
    finished_at = factory.LazyAttribute(lambda attempt: attempt.started_at)


class DispatcherHeartbeatFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = DispatcherHeartbeat

    name = factory.Sequence(lambda n: f"dispatcher-host:{1000 + n}")
    beat_at = factory.LazyFunction(timezone.now)
