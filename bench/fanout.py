"""Ingest latency against N slow destinations (each answers after a fixed delay).

Serves Data Pusher (`make serve`) on a scratch SQLite database, then on a scratch PostgreSQL one,
points N destinations at a local receiver that sleeps DELAY before answering 200, and times
sequential POSTs to /server/incoming_data from this process. Prints p50/p95 per N and the ratio
of p50 to the delay: 1.0 would be perfect overlap; sequential fan-out would be about N.

Usage:  .venv/bin/python bench/fanout.py [--delay-ms 200] [--requests 40] [--counts 1,5,10,20]
            [--databases sqlite postgresql]
"""

import argparse
import statistics

import benchlib


def time_ingest(port: int, token: str, n: int) -> float:
    status, answer, seconds = benchlib.ingest(port, token)
    statuses = [d["status"] for d in answer["deliveries"]]
    if status != 200 or statuses != ["succeeded"] * n:
        raise SystemExit(f"unexpected answer: {status} {statuses}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delay-ms", type=int, default=200)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--counts", default="1,5,10,20")
    parser.add_argument("--databases", nargs="+", default=["sqlite", "postgresql"])
    args = parser.parse_args()
    delay = args.delay_ms / 1000
    counts = [int(n) for n in args.counts.split(",")]
    receiver = benchlib.start_receiver(delay)
    print(f"ingest latency: destinations answer after {args.delay_ms} ms, {args.requests} requests a row")
    for database in args.databases:
        database_url = benchlib.database_url(database, "fanout")
        env = benchlib.app_env(database_url)
        benchlib.manage(env, "migrate", "-v0")
        urls = [[f"http://127.0.0.1:{receiver.port}/{n}/{i}" for i in range(n)] for n in counts]
        tokens = dict(zip(counts, benchlib.create_accounts(env, urls), strict=True))
        port = benchlib.free_port()
        server = benchlib.serve(env, port)
        try:
            print(f"{database}\n{'destinations':>12} {'p50 ms':>8} {'p95 ms':>8} {'p50/delay':>10}")
            for n in counts:
                for _ in range(3):  # warm-up: connections, imports, caches
                    time_ingest(port, tokens[n], n)
                samples = [time_ingest(port, tokens[n], n) for _ in range(args.requests)]
                p50, p95 = statistics.median(samples), benchlib.percentile(samples, 0.95)
                print(f"{n:>12} {p50 * 1000:>8.1f} {p95 * 1000:>8.1f} {p50 / delay:>10.3f}")
        finally:
            server.stop()
    if "postgresql" in args.databases:
        benchlib.drop_database()


if __name__ == "__main__":
    main()
