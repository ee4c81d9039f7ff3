"""The web workers' memory (RSS) with concurrent ingests of about 1 MiB each.

Serves Data Pusher with `make serve` (SQLite, sync mode, WEB_CONCURRENCY processes of WEB_THREADS
threads), one account with 3 POST destinations at a local receiver that answers at once, and sends
rounds of CONCURRENT ingests at once of a JSON object of about 1 MiB (at most
DATA_UPLOAD_MAX_MEMORY_SIZE), in two shapes: many small values, and one long string. Each shape
has REPEATS rounds. Prints each worker's RSS (VmRSS) before, its peak during each round (sampled
every 0.1 s) and at the end of it, and 5 s after the last round: whether the memory comes back.
Checks that every answer is 200 with every delivery succeeded.

Usage:  .venv/bin/python bench/memory.py [--concurrent 16] [--repeats 3] [--web-concurrency 2]
            [--web-threads 8]
"""

import argparse
import json
import threading
import time

import benchlib

DESTINATIONS = 3
TARGET_BYTES = 1024 * 1024
RSS_INTERVAL = 0.1
SETTLE_SECONDS = 5
PRINT_UPLOAD_LIMIT = "from django.conf import settings; print(settings.DATA_UPLOAD_MAX_MEMORY_SIZE)"


def many_small_values(size: int) -> bytes:
    """A JSON object of at most `size` bytes: a list of small records."""

    def record(i: int) -> dict:
        return {"id": i, "name": f"item {i:07d}", "price": i % 1000 / 4, "tags": ["red", "large"]}

    items: list[dict] = []
    length = len(json.dumps({"items": items}))
    while True:
        item = record(len(items))
        grown = length + len(json.dumps(item)) + (2 if items else 0)  # 2: the ", " before it
        if grown > size:
            return json.dumps({"items": items}).encode()
        items.append(item)
        length = grown


def one_long_string(size: int) -> bytes:
    """A JSON object of exactly `size` bytes: one string value."""
    overhead = len(json.dumps({"text": ""}))
    return json.dumps({"text": "x" * (size - overhead)}).encode()


def ingest_round(port: int, token: str, body: bytes, concurrent: int) -> None:
    """`concurrent` ingests of `body` sent at once; fails unless each delivered to every destination."""
    headers = {"Content-Type": "application/json", "CL-X-TOKEN": token}
    barrier = threading.Barrier(concurrent)
    failures: list[str] = []

    def client():
        barrier.wait()
        status, answer, _ = benchlib.call(port, "POST", benchlib.INGEST_PATH, headers, body)
        statuses = [d["status"] for d in answer.get("deliveries", [])]
        if status != 200 or statuses != ["succeeded"] * DESTINATIONS:
            failures.append(f"{status} {answer}")

    threads = [threading.Thread(target=client) for _ in range(concurrent)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise SystemExit(f"unexpected answers: {failures}")


def row(label: str, megabytes: list[float]) -> str:
    return f"{label:<28}" + "".join(f"{mb:>11.1f}" for mb in megabytes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrent", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--web-concurrency", default="2")
    parser.add_argument("--web-threads", default="8")
    args = parser.parse_args()
    database = benchlib.scratch() / "memory.sqlite3"
    env = benchlib.app_env(
        f"sqlite:///{database}",
        WEB_CONCURRENCY=args.web_concurrency,
        WEB_THREADS=args.web_threads,
    )
    benchlib.manage(env, "migrate", "-v0")
    limit = int(benchlib.manage(env, "shell", "-c", PRINT_UPLOAD_LIMIT).split()[-1])
    size = min(TARGET_BYTES, limit)
    receiver = benchlib.start_receiver(0)
    urls = [f"http://127.0.0.1:{receiver.port}/{i}" for i in range(DESTINATIONS)]
    [token] = benchlib.create_accounts(env, [urls])
    shapes = {"many small values": many_small_values(size), "one long string": one_long_string(size)}

    print(
        f"web worker RSS: {args.concurrent} concurrent ingests, {DESTINATIONS} destinations answering "
        f"at once, SQLite, sync, make serve with WEB_CONCURRENCY={args.web_concurrency} "
        f"WEB_THREADS={args.web_threads}"
    )
    note = "" if size == TARGET_BYTES else f", not 1 MiB: DATA_UPLOAD_MAX_MEMORY_SIZE is {limit}"
    print(f"bodies at most {size} bytes{note}: " + ", ".join(f"{s} {len(b)} B" for s, b in shapes.items()))
    port = benchlib.free_port()
    server = benchlib.serve(env, port)
    try:
        for _ in range(args.concurrent):  # imports, connections: a worker as it serves small ingests
            status, _, _ = benchlib.ingest(port, token)
            if status != 200:
                raise SystemExit(f"warm-up ingest answered {status}")
        workers = benchlib.gunicorn_workers(server)
        print(f"\n{'RSS, MB':<28}" + "".join(f"{f'worker {n}':>11}" for n in range(1, len(workers) + 1)))
        print(row("before", [benchlib.rss_mb(pid) for pid in workers]))
        for shape, body in shapes.items():
            for repeat in range(1, args.repeats + 1):
                with benchlib.RssPeaks(workers, RSS_INTERVAL) as rss:
                    ingest_round(port, token, body, args.concurrent)
                print(row(f"{shape} {repeat}: peak", [rss.peak[pid] for pid in workers]))
                print(row("           at the end", [benchlib.rss_mb(pid) for pid in workers]), flush=True)
        time.sleep(SETTLE_SECONDS)
        print(row(f"{SETTLE_SECONDS} s after the last round", [benchlib.rss_mb(pid) for pid in workers]))
    finally:
        server.stop()
        for path in benchlib.scratch().glob(f"{database.name}*"):  # about 100 MB of stored ingests
            path.unlink()


if __name__ == "__main__":
    main()
