from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet

from accounts.selectors import scoped
from destinations.models import CircuitState, Destination


def destination_list(*, user: AbstractBaseUser) -> QuerySet[Destination]:
    """The destinations of the accounts `user` is a member of (all of them for staff)."""
    return scoped(Destination.objects.all(), user=user)


@dataclass(frozen=True)
class Circuit:
    """A destination's circuit as its representation shows it: `state` (closed, open or half_open),
    its consecutive failed attempts and when the next probe is due (None unless open)."""

    state: str
    consecutive_failures: int
    next_probe_at: datetime | None


def destination_circuit(*, destination: Destination) -> Circuit:
    """`destination`'s circuit breaker (server/services/breaker.py) as stored: its state, retryable
    failures in a row, and the next probe's time while not closed (for half_open: when a probe
    under way counts as lost)."""
    closed = destination.circuit_state == CircuitState.CLOSED
    return Circuit(
        state=destination.circuit_state,
        consecutive_failures=destination.consecutive_failures,
        next_probe_at=None if closed else destination.next_probe_at,
    )
