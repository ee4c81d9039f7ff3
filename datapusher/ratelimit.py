"""Counters in the shared cache (django-ratelimit's fixed windows, counted with the cache's atomic
increment), so that a limit holds across processes when REDIS_URL is set."""

import logging

from django.http import HttpRequest
from django_ratelimit.core import get_usage

logger = logging.getLogger(__name__)


def limit_wait(
    *, request: HttpRequest, group: str, key: str, rate: str | None, count: bool, at_limit: bool = False
) -> int | None:
    """Seconds until the `group` counter of `key` is under `rate` again ("10/minute", DRF's format),
    or None when it is under it (or `rate` is None). With `count`, this call counts as one more.
    With `at_limit`, reaching the rate already limits (for counters of failures, checked before the
    next try). A cache that fails limits nothing: the error is logged, the request goes on."""
    if rate is None:
        return None
    try:
        usage = get_usage(request, group=group, key=lambda _group, _request: key, rate=rate, increment=count)
    except Exception:  # the cache's own errors: Redis down, timed out, refused
        logger.warning("rate limit %s not checked: the cache failed", group, exc_info=True)
        return None
    if usage is None or usage["limit"] == 0:  # limits off, or the cache answered nothing
        return None
    over = usage["count"] >= usage["limit"] if at_limit else usage["count"] > usage["limit"]
    return max(usage["time_left"], 1) if over else None
