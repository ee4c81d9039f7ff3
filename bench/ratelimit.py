"""CPU of one ingest rate-limit check (datapusher.ratelimit.limit_wait, counting), by storage.

Runs in this process, from --threads threads at once (each making --checks checks), against
per-process memory and Redis at 127.0.0.1:6379/12 (what REDIS_URL selects). Prints microseconds of
CPU (process time) per check: what the check adds to each ingest.

Usage:  .venv/bin/python bench/ratelimit.py [--checks 5000] [--threads 1]
"""

import argparse
import os
import sys
import threading
import time

import benchlib

sys.path.insert(0, str(benchlib.ROOT))  # the app's packages, for Django in this process
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "datapusher.settings")
os.environ.setdefault("SECRET_KEY", "bench")

import django

django.setup()

from django.test.utils import override_settings  # noqa: E402

from datapusher.ratelimit import limit_wait  # noqa: E402

STORAGES = {
    "per-process memory (no REDIS_URL)": "memory://",
    "Redis (REDIS_URL)": "redis://127.0.0.1:6379/12",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    def check() -> None:
        limit_wait(group="ingest", key="bench", rate="1000000/second", count=True)

    def checks() -> None:
        for _ in range(args.checks):
            check()

    print(f"{'storage':<36} {'µs CPU per check':>17}")
    for name, uri in STORAGES.items():
        with override_settings(DATAPUSHER_RATE_LIMIT_STORAGE=uri):
            for _ in range(200):  # connect, warm up
                check()
            threads = [threading.Thread(target=checks) for _ in range(args.threads)]
            started = time.process_time()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            total = args.checks * args.threads
            print(f"{name:<36} {(time.process_time() - started) / total * 1e6:>17.0f}")


if __name__ == "__main__":
    main()
