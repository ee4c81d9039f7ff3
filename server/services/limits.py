"""A destination's own limits, applied to every attempt a worker makes: at most `rate_limit` requests
a second and `max_in_flight` at once (destinations.models.Destination; null: no limit).

A delivery a limit holds back is not sent and spends no attempt: it stays pending, its lease released
(and not marked handed over), due again when it may go, with `error` saying why — the dispatcher
publishes it then. A destination without limits costs no query and no round trip.

In flight means holding an unexpired lease: a worker that dies lets go of its deliveries when their
leases run out, as it lets go of them for the dispatcher. Deliveries are admitted one at a time per
destination, under a lock on its row, so that workers in any number of processes count right.

Requests a second are counted in a moving window, where DATAPUSHER_RATE_LIMIT_STORAGE says (Redis,
when REDIS_URL is set, holds across processes); a storage that fails limits nothing.
"""

import logging
import math
import random
import time
import uuid
from collections.abc import Sequence
from datetime import timedelta
from fractions import Fraction

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from limits import RateLimitItem, RateLimitItemPerSecond
from limits.strategies import MovingWindowRateLimiter

from datapusher.ratelimit import limiter
from destinations.models import RATE_LIMIT_MAX, Destination
from server import metrics
from server.models import Delivery

# A delivery over its destination's max_in_flight is due again this much later (seconds), spread so
# that those held back do not all come back at once.
IN_FLIGHT_DELAY_SECONDS = (0.2, 1.0)
# The longest window a rate is counted in (seconds): a rate of one request every 1000 s at the least.
RATE_WINDOW_MAX_SECONDS = 1000

logger = logging.getLogger(__name__)


def rate_window(rate: float) -> tuple[int, int]:
    """`rate` (requests a second) as (requests, seconds), whole numbers, never more than the rate:
    over the shortest window in which the rate is (about) a whole number of requests (2.5 is 5 in
    2 s), within RATE_WINDOW_MAX_SECONDS and RATE_LIMIT_MAX requests, the count rounded down."""
    longest = max(1, min(RATE_WINDOW_MAX_SECONDS, math.floor(RATE_LIMIT_MAX / rate)))
    seconds = Fraction(rate).limit_denominator(longest).denominator
    # The epsilon: 0.3 x 10 is 2.9999999999999996 in floating point, and means 3.
    return max(math.floor(rate * seconds + 1e-9), 1), seconds


def _rate_item(rate: float) -> RateLimitItem:
    return RateLimitItemPerSecond(*rate_window(rate))


def _rate_wait(*, destination: Destination) -> float | None:
    """Seconds until `destination` may be sent one more request, or None if it may now (counted as
    sent). The wait runs to when the window's first request leaves it, plus up to a window more:
    those held back come back spread, as the window frees."""
    item = _rate_item(destination.rate_limit)
    key = str(destination.pk)
    try:
        counters = limiter(settings.DATAPUSHER_RATE_LIMIT_STORAGE, MovingWindowRateLimiter)
        if counters.hit(item, "destination", key):
            return None
        reset_at = counters.get_window_stats(item, "destination", key).reset_time
    except Exception:  # the storage's own errors: Redis down, timed out, refused
        logger.warning("destination %s rate limit not checked: the storage failed", key, exc_info=True)
        return None
    return max(reset_at - time.time(), 0.0) + random.uniform(0, item.get_expiry())  # noqa: S311 (not crypto)


def _delivery_delay(*, delivery: Delivery, lease_id: uuid.UUID, seconds: float, reason: str) -> None:
    """Put `delivery` (held under `lease_id`) off by `seconds`: pending, released, no attempt spent."""
    now = timezone.now()
    Delivery.objects.filter(pk=delivery.pk, lease_id=lease_id).update(
        status=Delivery.Status.PENDING,
        next_attempt_at=now + timedelta(seconds=seconds),
        error=f"delayed: {reason}; still pending",
        lease_id=None,
        lease_expires_at=None,
        dispatched_at=None,
        updated_at=now,
    )


def _in_flight_admit(*, delivery: Delivery, lease_id: uuid.UUID) -> bool:
    """Whether `delivery` may be sent now under its destination's max_in_flight (read again, under a
    lock on the destination's row); if not, it is put off, before the lock is let go."""
    with transaction.atomic():
        limit = (
            # NO KEY: an ingest inserting a delivery of this destination (its foreign key check takes a
            # KEY SHARE lock) is not held up by it.
            Destination.objects.select_for_update(no_key=True)
            .filter(pk=delivery.destination_id)
            .values_list("max_in_flight", flat=True)
            .first()
        )
        if limit is None:
            return True
        in_flight = (
            Delivery.objects.filter(
                destination_id=delivery.destination_id,
                lease_id__isnull=False,
                lease_expires_at__gte=timezone.now(),
            )
            .exclude(pk=delivery.pk)
            .count()
        )
        if in_flight < limit:
            return True
        _delivery_delay(
            delivery=delivery,
            lease_id=lease_id,
            seconds=random.uniform(*IN_FLIGHT_DELAY_SECONDS),  # noqa: S311 (not crypto)
            reason=f"destination max in flight ({limit})",
        )
    metrics.delivery_delayed(limit="max_in_flight")
    return False


def _rate_admit(*, delivery: Delivery, lease_id: uuid.UUID) -> bool:
    """Whether `delivery` may be sent now under its destination's rate_limit; if not, it is put off."""
    wait = _rate_wait(destination=delivery.destination)
    if wait is None:
        return True
    reason = f"destination rate limit ({delivery.destination.rate_limit:g}/s)"
    _delivery_delay(delivery=delivery, lease_id=lease_id, seconds=wait, reason=reason)
    metrics.delivery_delayed(limit="rate_limit")
    return False


def deliveries_admit(*, deliveries: Sequence[Delivery], lease_id: uuid.UUID) -> list[Delivery]:
    """Those of `deliveries` (held under `lease_id`, with their destination) that their destination's
    limits let be sent now; each other is put off, as the module says. A request counts against the
    rate only once it may go in flight."""
    return [
        delivery
        for delivery in deliveries
        if (
            delivery.destination.max_in_flight is None
            or _in_flight_admit(delivery=delivery, lease_id=lease_id)
        )
        and (delivery.destination.rate_limit is None or _rate_admit(delivery=delivery, lease_id=lease_id))
    ]
