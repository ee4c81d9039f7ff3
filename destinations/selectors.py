from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet

from accounts.selectors import scoped
from destinations.models import Destination


def destination_list(*, user: AbstractBaseUser) -> QuerySet[Destination]:
    """The destinations of the accounts `user` is a member of (all of them for staff)."""
    return scoped(Destination.objects.all(), user=user)
