"""Counters in fixed windows (the limits library), stored where DATAPUSHER_RATE_LIMIT_STORAGE says:
in Redis when REDIS_URL is set, so that a limit holds across processes, where one check is one
round trip (an increment that sets its own expiry, in one script); in the process's memory
otherwise. limiter() gives the other strategies on the same storage (server/services/limits.py
counts in moving windows)."""

import functools
import logging
import math
import threading
import time

from django.conf import settings
from limits import RateLimitItem, RateLimitItemPerSecond, storage
from limits.storage import Storage
from limits.strategies import FixedWindowRateLimiter, RateLimiter
from rest_framework.throttling import SimpleRateThrottle

logger = logging.getLogger(__name__)

# A Redis that does not answer costs a request at most this long (seconds) per check.
STORAGE_TIMEOUT_SECONDS = 1.0
# One storage per URI and process (it keeps its connection pool), and one limiter per strategy on it,
# built once: threads building their own at once would count in limiters then thrown away, and limits
# looks its storage's client library up on first use, which threads doing at once fail ("… Found
# version: 0.0.0").
_storages: dict[str, Storage] = {}
_limiters: dict[tuple[str, type[RateLimiter]], RateLimiter] = {}
_building = threading.Lock()


def limiter(uri: str, strategy: type[RateLimiter] = FixedWindowRateLimiter) -> RateLimiter:
    """This process's limiter of `strategy` (fixed windows by default) on the storage at `uri`."""
    found = _limiters.get((uri, strategy))
    if found is None:
        with _building:
            found = _limiters.get((uri, strategy))
            if found is None:
                if uri not in _storages:
                    _storages[uri] = storage.storage_from_string(
                        uri,
                        socket_connect_timeout=STORAGE_TIMEOUT_SECONDS,
                        socket_timeout=STORAGE_TIMEOUT_SECONDS,
                    )
                found = _limiters[(uri, strategy)] = strategy(_storages[uri])
    return found


def limiters_forget() -> None:
    """Drop this process's limiters (and per-process counters): the next check builds anew."""
    with _building:
        _limiters.clear()
        _storages.clear()


@functools.cache
def rate_item(rate: str) -> RateLimitItem:
    """ "10/minute" (DRF's format, read by DRF's own parser) as the limits library's item."""
    amount, seconds = SimpleRateThrottle.parse_rate(None, rate)
    return RateLimitItemPerSecond(amount, seconds)


def limit_wait(*, group: str, key: str, rate: str | None, count: bool) -> int | None:
    """Seconds until the `group` counter of `key` is under `rate` again ("10/minute", DRF's format),
    or None when it is under it (or `rate` is None). With `count`, this call counts as one more and
    limits when it goes past the rate; without, it only looks, and a counter already at the rate
    limits (for counters of failures, checked before the next try). A storage that fails limits
    nothing: the error is logged, the request goes on."""
    if rate is None:
        return None
    item = rate_item(rate)
    try:
        counters = limiter(settings.DATAPUSHER_RATE_LIMIT_STORAGE)
        if (counters.hit if count else counters.test)(item, group, key):
            return None
        reset_at = counters.get_window_stats(item, group, key).reset_time
    except Exception:  # the storage's own errors: Redis down, timed out, refused
        logger.warning("rate limit %s not checked: the storage failed", group, exc_info=True)
        return None
    return max(math.ceil(reset_at - time.time()), 1)
