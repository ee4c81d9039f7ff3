"""CPU of one ingest rate-limit check (datapusher.ratelimit.limit_wait, counting), by cache backend.

Runs in this process, single-threaded, against the per-process memory cache, Django's own Redis
backend and django-redis (the one REDIS_URL selects), each on Redis at 127.0.0.1:6379/12. Prints
microseconds of CPU (process time) per check: what the check adds to each ingest, before the
threads of a loaded worker contend for the GIL around its round trips.

Usage:  .venv/bin/python bench/ratelimit.py [--checks 5000]
"""

import argparse
import os
import sys
import time

import benchlib

sys.path.insert(0, str(benchlib.ROOT))  # the app's packages, for Django in this process
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "datapusher.settings")
os.environ.setdefault("SECRET_KEY", "bench")

import django

django.setup()

from django.test import RequestFactory  # noqa: E402
from django.test.utils import override_settings  # noqa: E402

from datapusher.ratelimit import limit_wait  # noqa: E402

REDIS = "redis://127.0.0.1:6379/12"
TIMEOUTS = {"socket_connect_timeout": 1.0, "socket_timeout": 1.0}
BACKENDS = {
    "per-process memory (no REDIS_URL)": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "Django's RedisCache": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS,
        "OPTIONS": TIMEOUTS,
    },
    "django-redis (REDIS_URL)": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": REDIS,
        "OPTIONS": {name.upper(): value for name, value in TIMEOUTS.items()},
    },
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=5000)
    args = parser.parse_args()
    request = RequestFactory().post("/server/incoming_data")

    def check() -> None:
        limit_wait(request=request, group="ingest", key="bench", rate="1000000/second", count=True)

    print(f"{'cache':<36} {'µs CPU per check':>17}")
    for name, cache in BACKENDS.items():
        with override_settings(CACHES={"default": cache}):
            for _ in range(200):  # connect, warm up
                check()
            started = time.process_time()
            for _ in range(args.checks):
                check()
            print(f"{name:<36} {(time.process_time() - started) / args.checks * 1e6:>17.0f}")


if __name__ == "__main__":
    main()
