"""Queued delivery: accept latency and worker drain rate, on PostgreSQL and Redis.

1. Serves Data Pusher with gunicorn in queue mode on a scratch PostgreSQL database and a Redis
   broker, with no worker running, and times sequential ingests to an account with 10
   destinations that each answer after DELAY: the accept latency (p50/p99) must not depend on them.
2. Starts 1, then 2, worker processes (`celery worker --pool threads`) and measures how fast they
   drain the deliveries those ingests queued (deliveries/s, from first to last success).

Needs PostgreSQL and Redis (the ones `.ci/run` starts). Usage:
    .venv/bin/python bench/queued.py [--ingests 200] [--delay-ms 500] [--worker-concurrency 32]
"""

import argparse
import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import redis
from benchlib import free_port, percentile, start_receiver, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
DATABASE = "datapusher_bench"
BROKER = "redis://127.0.0.1:6379/14"
DESTINATIONS = 10


def reset_database() -> None:
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DATABASE}")


def manage(env: dict[str, str], *args: str) -> str:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    ).stdout


def sql(query: str) -> list[tuple]:
    with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{DATABASE}") as conn:
        return conn.execute(query).fetchall()


def ingest(port: int, token: str) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    started = time.perf_counter()
    conn.request(
        "POST",
        "/server/incoming_data",
        json.dumps({"order": 42, "items": [1, 2, 3]}),
        {"Content-Type": "application/json", "CL-X-TOKEN": token},
    )
    response = conn.getresponse()
    answer = json.loads(response.read())
    elapsed = time.perf_counter() - started
    conn.close()
    if response.status != 202 or len(answer["deliveries"]) != DESTINATIONS:
        raise SystemExit(f"unexpected answer: {response.status} {answer}")
    return elapsed


def drain(env: dict[str, str], processes: int, concurrency: int, expected: int) -> float:
    """Start `processes` workers, wait until `expected` deliveries succeeded; deliveries/s."""
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "datapusher", "worker", "--pool", "threads",
             "--concurrency", str(concurrency), "--loglevel", "WARNING", "--without-mingle",
             "--without-gossip", "--hostname", f"bench{i}@%h"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        for i in range(processes)
    ]  # fmt: skip
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            [(done,)] = sql("SELECT count(*) FROM server_delivery WHERE status = 'succeeded'")
            if done >= expected:
                break
            time.sleep(0.5)
        [(first, last, done)] = sql(
            "SELECT min(processed_at), max(processed_at), count(*) "
            "FROM server_delivery WHERE status = 'succeeded'"
        )
        if done < expected:
            raise SystemExit(f"only {done} of {expected} deliveries succeeded")
        [(attempts,)] = sql("SELECT count(*) FROM server_attempt")
        if attempts != expected:
            print(f"  note: {attempts} attempts for {expected} deliveries")
        return done / (last - first).total_seconds()
    finally:
        for worker in workers:
            os.killpg(worker.pid, signal.SIGTERM)
        for worker in workers:
            worker.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ingests", type=int, default=200)
    parser.add_argument("--delay-ms", type=int, default=500)
    parser.add_argument("--worker-concurrency", type=int, default=32)
    args = parser.parse_args()

    receiver_port = start_receiver(args.delay_ms / 1000)
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DATABASE}",
        "CELERY_BROKER_URL": BROKER,
        "DATAPUSHER_DELIVERY_MODE": "queue",
        "SECRET_KEY": "bench",
        "DEBUG": "false",
        "DATAPUSHER_ALLOWED_NETWORKS": "127.0.0.0/8",
        "LOG_LEVEL": "ERROR",
    }
    port = free_port()
    print(
        f"queued delivery: {DESTINATIONS} destinations answering after {args.delay_ms} ms, "
        f"{args.ingests} ingests per run, gunicorn 2 processes x 8 threads, "
        f"workers --pool threads --concurrency {args.worker_concurrency}"
    )
    for processes in (1, 2):
        reset_database()
        redis.Redis.from_url(BROKER).flushdb()
        manage(env, "migrate", "-v0")
        script = f"""
from accounts.services import account_create
from destinations.services import destination_create
account = account_create(email="bench@example.com", account_name="bench")
for i in range({DESTINATIONS}):
    url = "http://127.0.0.1:{receiver_port}/" + str(i)
    destination_create(account=account, url=url, http_method="POST", headers={{}})
print(account.app_secret_token)
"""
        token = manage(env, "shell", "-c", script).strip().splitlines()[-1]
        server = subprocess.Popen(
            [str(ROOT / ".venv/bin/gunicorn"), "datapusher.wsgi", "--bind", f"127.0.0.1:{port}",
             "--workers", "2", "--worker-class", "gthread", "--threads", "8"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        try:
            wait_for_port(port)
            for _ in range(10):
                ingest(port, token)  # warm-up: imports, connections
            samples = [ingest(port, token) for _ in range(args.ingests)]
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(30)
        print(
            f"accept latency (no worker running): p50 {statistics.median(samples) * 1000:.1f} ms, "
            f"p99 {percentile(samples, 0.99) * 1000:.1f} ms over {len(samples)} ingests"
        )
        expected = (args.ingests + 10) * DESTINATIONS
        rate = drain(env, processes, args.worker_concurrency, expected)
        print(f"drain rate, {processes} worker process(es): {rate:.1f} deliveries/s ({expected} deliveries)")
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")


if __name__ == "__main__":
    main()
