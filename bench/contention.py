"""Contention: the broker down, a worker killed, one account flooding. Sections, all by default:

--broker     Queue-mode accept latency (p50/p99/max of sequential ingests, 10 destinations) under
             `make serve` on a scratch PostgreSQL database, with the Redis broker healthy, paused (a
             proxy in front of it that accepts connections and never answers) and dead (a closed
             port); every answer must be 202 and every event stored.
--recovery   Queue mode with every setting at its production default, the dispatcher and one worker
             (--pool threads --concurrency 32): SIGKILL the worker's process group while deliveries
             are in flight (the receiver holds the first request of each), start another, and time
             from the kill until every delivery has succeeded. Each receiver must have seen each
             webhook-id once or twice.
--isolation  Sync mode under `make serve`, on SQLite and PostgreSQL: account A floods (48 concurrent
             connections, 3 destinations answering after 3 s) while account B ingests sequentially to
             one fast destination. B's latency and success, and GET /api/accounts/'s latency, with
             and without the flood; A's throughput and deliveries not started.

Needs PostgreSQL and Redis (the ones `.ci/run` starts). Usage:
    .venv/bin/python bench/contention.py [--broker] [--recovery] [--isolation] [--runs 3]
"""

import argparse
import multiprocessing
import statistics
import threading
import time
from collections import Counter

import benchlib
import redis

WARM_UP = 10


def events_stored(database_url: str) -> int:
    return benchlib.sql(database_url, "SELECT count(*) FROM server_event")[0][0]


def deliveries_unfinished(database_url: str) -> int:
    return benchlib.sql(database_url, "SELECT count(*) FROM server_delivery WHERE status <> 'succeeded'")[0][
        0
    ]


# --- 1. The broker healthy, paused, dead ----------------------------------------------------------


def broker_outage(ingests: int) -> None:
    database_url = benchlib.reset_database()
    env = benchlib.queue_env(database_url)
    benchlib.manage(env, "migrate", "-v0")
    redis.Redis.from_url(benchlib.BROKER).flushdb()
    receiver = benchlib.start_receiver(0)
    [token] = benchlib.create_accounts(env, [[f"http://127.0.0.1:{receiver.port}/{i}" for i in range(10)]])
    proxy = benchlib.BrokerProxy(benchlib.REDIS_PORT)
    brokers = {
        "healthy": benchlib.BROKER,
        "paused": benchlib.BROKER.replace(str(benchlib.REDIS_PORT), str(proxy.port)),
        "dead": benchlib.BROKER.replace(str(benchlib.REDIS_PORT), str(benchlib.free_port())),
    }
    print(
        f"\n1. queue-mode accept latency, {ingests} sequential ingests to 10 destinations, make serve "
        f"(2 x 32), PostgreSQL, broker healthy / paused (silent proxy) / dead (closed port)"
    )
    for name, broker_url in brokers.items():
        before = events_stored(database_url)
        port = benchlib.free_port()
        server = benchlib.serve(benchlib.queue_env(database_url, broker_url), port)
        try:
            for _ in range(WARM_UP):  # imports, connections (to the proxy while it still forwards)
                benchlib.ingest(port, token)
            if name == "paused":
                proxy.pause()
            began = time.monotonic()
            answers = [benchlib.ingest(port, token) for _ in range(ingests)]
            elapsed = time.monotonic() - began
        finally:
            server.stop()
        seconds = [s for _, _, s in answers]
        statuses = Counter(status for status, _, _ in answers)
        waited = sum(s >= 0.5 for s in seconds)
        print(
            f"  {name:>7}: {benchlib.latency_summary(seconds)}; {waited} took >= 0.5 s (in {elapsed:.1f} s); "
            f"answers {dict(statuses)}; events stored {events_stored(database_url) - before} "
            f"of {WARM_UP + ingests}"
        )


# --- 2. A worker killed mid-delivery ----------------------------------------------------------------


def worker_kill(runs: int) -> None:
    # 2 accounts x 5 ingests x 3 destinations = 30 deliveries; one account may have at most
    # DATAPUSHER_ACCOUNT_CONCURRENCY (16) sends waiting per worker process, so 2 accounts keep all
    # 30 in flight in one worker at once.
    accounts, ingests, destinations = 2, 5, 3
    deliveries = accounts * ingests * destinations
    database_url = benchlib.reset_database()
    env = benchlib.queue_env(database_url)
    benchlib.manage(env, "migrate", "-v0")
    port = benchlib.free_port()
    started = [benchlib.serve(env, port), benchlib.dispatcher(env)]
    print(
        f"\n2. recovery after SIGKILL of a worker with {deliveries} deliveries in flight "
        f"({accounts} accounts x {ingests} ingests x {destinations} destinations), production defaults, "
        "1 dispatcher, workers --pool threads --concurrency 32"
    )
    took = []
    try:
        for run in range(runs):
            redis.Redis.from_url(benchlib.BROKER).flushdb()
            receiver = benchlib.start_receiver(0, hold_first=True)
            urls = [f"http://127.0.0.1:{receiver.port}/{i}" for i in range(destinations)]
            tokens = benchlib.create_accounts(env, [urls] * accounts)
            doomed = benchlib.worker(env, 32, f"doomed{run}")
            for i in range(accounts * ingests):
                status, answer, _ = benchlib.ingest(port, tokens[i % accounts])
                if status != 202:
                    raise SystemExit(f"unexpected answer: {status} {answer}")
            benchlib.wait_until(
                lambda r=receiver: len(r.webhook_ids) == deliveries,
                60,
                f"the {deliveries} deliveries did not all reach the receiver within 60 s",
            )
            doomed.kill()
            killed_at = time.monotonic()
            receiver.release.set()
            replacement = benchlib.worker(env, 32, f"worker{run}")
            try:
                benchlib.wait_until(
                    lambda: deliveries_unfinished(database_url) == 0,
                    180,
                    "not every delivery succeeded within 180 s of the kill",
                )
                took.append(time.monotonic() - killed_at)
            finally:
                replacement.stop()
            times_seen = Counter(receiver.webhook_ids.values())
            print(
                f"  run {run + 1}: every delivery succeeded {took[-1]:.1f} s after the kill; "
                f"webhook-ids received once: {times_seen[1]}, twice: {times_seen[2]}, "
                f"other: {deliveries - times_seen[1] - times_seen[2]}"
            )
    finally:
        for process in started:
            process.stop()
    median = statistics.median(took)
    print(f"  kill -> all succeeded: min {min(took):.1f} s, median {median:.1f} s, max {max(took):.1f} s")


# --- 3. Sync mode: one account floods, another ingests -----------------------------------------------


def flood(port: int, token: str, connections: int, stop, results) -> None:
    """In a process of its own (its threads would hold up this one's timing): `connections`
    closed-loop clients ingesting for account A until `stop` is set; puts (counts, seconds)."""
    counts: Counter[str] = Counter()
    lock = threading.Lock()

    def loop() -> None:
        while not stop.is_set():
            try:
                status, answer, _ = benchlib.ingest(port, token)
            except (OSError, ValueError) as err:  # refused, cut, or not JSON
                with lock:
                    counts[f"error {type(err).__name__}"] += 1
                continue
            with lock:
                counts[f"answered {status}"] += 1
                for delivery in answer.get("deliveries", []):
                    not_started = (delivery["error"] or "").startswith("not started")
                    counts["not started" if not_started else delivery["status"]] += 1

    began = time.monotonic()
    threads = [threading.Thread(target=loop) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    results.put((dict(counts), time.monotonic() - began))


def account_b(port: int, token: str, api_token: str, ingests: int) -> tuple[list[float], int, list[float]]:
    """B's sequential ingests (seconds each, how many delivered) and, every fifth, GET /api/accounts/."""
    seconds, delivered, api = [], 0, []
    for i in range(ingests):
        status, answer, took = benchlib.ingest(port, token)
        seconds.append(took)
        delivered += status == 200 and [d["status"] for d in answer["deliveries"]] == ["succeeded"]
        if i % 5 == 0:
            status, _, took = benchlib.call(
                port, "GET", "/api/accounts/", {"Authorization": f"Token {api_token}"}
            )
            if status != 200:
                raise SystemExit(f"GET /api/accounts/ answered {status}")
            api.append(took)
    return seconds, delivered, api


def isolation(ingests: int, connections: int, slow: float) -> None:
    print(
        f"\n3. sync-mode isolation, make serve (2 x 32): A floods with {connections} connections to 3 "
        f"destinations answering after {slow:g} s; B ingests {ingests} times in a row to 1 fast destination"
    )
    spawn = multiprocessing.get_context("spawn")
    built_up = min(connections, 16) * 3  # A's requests in flight: at least one web process's share
    for database in ("sqlite", "postgresql"):
        if database == "sqlite":
            database_url = f"sqlite:///{benchlib.scratch()}/isolation.sqlite3"
        else:
            database_url = benchlib.reset_database()
        env = benchlib.app_env(database_url, DATAPUSHER_DELIVERY_MODE="sync", CELERY_BROKER_URL="")
        benchlib.manage(env, "migrate", "-v0")
        slow_receiver, fast_receiver = benchlib.start_receiver(slow), benchlib.start_receiver(0)
        a_token, b_token = benchlib.create_accounts(
            env,
            [
                [f"http://127.0.0.1:{slow_receiver.port}/{i}" for i in range(3)],
                [f"http://127.0.0.1:{fast_receiver.port}/"],
            ],
        )
        api_token = benchlib.manage(env, "create_api_token", "bench").strip()
        port = benchlib.free_port()
        server = benchlib.serve(env, port)
        try:
            account_b(port, b_token, api_token, WARM_UP)
            quiet = account_b(port, b_token, api_token, ingests)
            stop, results = spawn.Event(), spawn.Queue()
            flooder = spawn.Process(target=flood, args=(port, a_token, connections, stop, results))
            flooder.start()
            benchlib.wait_until(
                lambda r=slow_receiver: r.in_flight >= built_up, 30, "the flood did not build up"
            )
            busy = account_b(port, b_token, api_token, ingests)
            stop.set()
            a_counts, a_seconds = results.get()
            flooder.join()
        finally:
            server.stop()
        print(f"  {database}:")
        for label, (seconds, delivered, api) in (("quiet", quiet), ("flood", busy)):
            print(
                f"    B, {label}: {benchlib.latency_summary(seconds)}; {delivered}/{ingests} delivered; "
                f"GET /api/accounts/ {benchlib.latency_summary(api)}"
            )
        print(f"    B p50 flood / quiet: {statistics.median(busy[0]) / statistics.median(quiet[0]):.2f}")
        answered, succeeded = a_counts.pop("answered 200", 0), a_counts.pop("succeeded", 0)
        refused = a_counts.pop("answered 429", 0)
        print(
            f"    A, {a_seconds:.1f} s of flood: {answered} ingests answered 200 "
            f"({answered / a_seconds:.1f}/s), {refused} answered 429 ({refused / a_seconds:.1f}/s); "
            f"deliveries {succeeded} succeeded ({succeeded / a_seconds:.1f}/s), "
            f"{a_counts.pop('not started', 0)} not started (left pending); other: {dict(a_counts)}; "
            f"at most {slow_receiver.max_in_flight} of A's requests in flight (bound 2 x 16 sends x 3 = 96)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", action="store_true", help="section 1 (no section flag: all)")
    parser.add_argument("--recovery", action="store_true", help="section 2")
    parser.add_argument("--isolation", action="store_true", help="section 3")
    parser.add_argument("--ingests", type=int, default=200, help="sequential ingests measured (1 and 3)")
    parser.add_argument("--runs", type=int, default=3, help="kills measured (2)")
    parser.add_argument("--connections", type=int, default=48, help="account A's flood (3)")
    parser.add_argument("--slow-ms", type=int, default=3000, help="account A's destinations (3)")
    args = parser.parse_args()
    everything = not (args.broker or args.recovery or args.isolation)
    print(f"contention benchmarks; process logs in {benchlib.scratch()}")
    try:
        if everything or args.broker:
            broker_outage(args.ingests)
        if everything or args.recovery:
            worker_kill(args.runs)
        if everything or args.isolation:
            isolation(args.ingests, args.connections, args.slow_ms / 1000)
    finally:
        benchlib.drop_database()


if __name__ == "__main__":
    main()
