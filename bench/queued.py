"""Queued delivery: accept latency and worker drain rate, on PostgreSQL and Redis.

1. Serves Data Pusher with `make serve` (gunicorn, the Makefile's 2 processes x 32 threads on this
   2-core machine) in queue mode on a scratch PostgreSQL database and a Redis broker, with no
   worker running, and times sequential ingests to accounts with 10 destinations each that answer
   after DELAY: the accept latency (p50/p99) must not depend on them.
2. Starts the dispatcher and 1, then 2, worker processes (`celery worker --pool threads`) and
   measures how fast they drain the deliveries those ingests queued (deliveries/s, from first to
   last success). The ingests go round-robin to ACCOUNTS accounts: one account may have at most
   DATAPUSHER_ACCOUNT_CONCURRENCY (16) sends waiting per worker process, so with one account the
   bulkhead, not the worker's threads, bounds the drain.

Needs PostgreSQL and Redis (the ones `.ci/run` starts). Usage:
    .venv/bin/python bench/queued.py [--ingests 200] [--delay-ms 500] [--worker-concurrency 32]
                                     [--accounts 4]
"""

import argparse
import itertools

import benchlib
import redis

DESTINATIONS = 10
WARM_UP = 10


def drain(env: dict[str, str], processes: int, concurrency: int, expected: int) -> float:
    """Start the dispatcher and `processes` workers, wait until `expected` deliveries succeeded;
    deliveries/s from the first success to the last."""
    database_url = env["DATABASE_URL"]
    started = [benchlib.dispatcher(env)] + [
        benchlib.worker(env, concurrency, f"bench{i}") for i in range(processes)
    ]
    query = (
        "SELECT min(processed_at), max(processed_at), count(*) "
        "FROM server_delivery WHERE status = 'succeeded'"
    )
    try:
        benchlib.wait_until(
            lambda: benchlib.sql(database_url, query)[0][2] >= expected,
            600,
            f"{expected} deliveries never all succeeded",
        )
        [(first, last, done)] = benchlib.sql(database_url, query)
        [(attempts,)] = benchlib.sql(database_url, "SELECT count(*) FROM server_attempt")
        if attempts != expected:
            print(f"  note: {attempts} attempts for {expected} deliveries")
        return done / (last - first).total_seconds()
    finally:
        for process in started:
            process.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ingests", type=int, default=200)
    parser.add_argument("--delay-ms", type=int, default=500)
    parser.add_argument("--worker-concurrency", type=int, default=32)
    parser.add_argument("--accounts", type=int, default=4)
    args = parser.parse_args()

    receiver = benchlib.start_receiver(args.delay_ms / 1000)
    print(
        f"queued delivery: {DESTINATIONS} destinations answering after {args.delay_ms} ms, "
        f"{args.ingests} ingests per run over {args.accounts} account(s), make serve (2 processes x 32 "
        f"threads), workers --pool threads --concurrency {args.worker_concurrency}"
    )
    for processes in (1, 2):
        env = benchlib.queue_env(benchlib.reset_database())
        redis.Redis.from_url(benchlib.BROKER).flushdb()
        benchlib.manage(env, "migrate", "-v0")
        urls = [f"http://127.0.0.1:{receiver.port}/{i}" for i in range(DESTINATIONS)]
        tokens = itertools.cycle(benchlib.create_accounts(env, [urls] * args.accounts))
        port = benchlib.free_port()
        server = benchlib.serve(env, port)
        try:
            for _ in range(WARM_UP):  # imports, connections
                benchlib.ingest(port, next(tokens))
            answers = [benchlib.ingest(port, next(tokens)) for _ in range(args.ingests)]
        finally:
            server.stop()
        if any(status != 202 or len(answer["deliveries"]) != DESTINATIONS for status, answer, _ in answers):
            raise SystemExit(f"unexpected answers: {[(s, a) for s, a, _ in answers if s != 202][:3]}")
        print(f"accept latency (no worker running): {benchlib.latency_summary([s for _, _, s in answers])}")
        expected = (args.ingests + WARM_UP) * DESTINATIONS
        rate = drain(env, processes, args.worker_concurrency, expected)
        print(f"drain rate, {processes} worker process(es): {rate:.1f} deliveries/s ({expected} deliveries)")
    benchlib.drop_database()


if __name__ == "__main__":
    main()
