"""Where a sync ingest's CPU goes: py-spy samples of a web worker under load, by part of the ingest.

Serves Data Pusher with `make serve` (2 processes of 8 threads) on SQLite or PostgreSQL, 3 instant
local destinations, loads it with wrk (16 connections, a new one per ingest) and samples one web
worker with py-spy (`--gil`: only the thread holding the GIL, i.e. running Python). Each sample is
counted once, for the first part of the table its stack is in; the table prints each part's share of
the samples and that share of the worker's CPU per ingest (from /proc). Time spent in C without the
GIL (SQLite's own work, the kernel) is in the CPU figure but not in the samples. The parts are
named so that the same table reads the code before and after the hot-path work (both names given).

Needs wrk (Debian: wrk) and py-spy (pip install py-spy), run as a user allowed to trace processes.
Usage:  .venv/bin/python bench/profile.py [--database sqlite|postgresql] [--seconds 12]
"""

import argparse
import collections
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import benchlib
import throughput

# (part, frame names that put a sample in it), tried in this order.
PARTS = [
    ("outbound requests, on the delivery pool", ("timed_send",)),
    ("building and signing requests, hand-off to the pool", ("_fan_out", "_outbound_request")),
    ("storing the event and its deliveries", ("_event_store",)),
    (
        "recording attempts and outcomes",
        (
            "_deliveries_record",
            "deliveries_send",
            "Model.save",
            "rows_update",
            "Atomic.__enter__",
            "Atomic.__exit__",
        ),
    ),
    (
        "token, account and destinations lookup",
        ("ingest_target_by_token", "account_get_by_token", "QuerySet._fetch_all"),
    ),
    ("reading and parsing the body", ("payload_parse", "request_body")),
    (
        "the answer (serializer / dict, JSON)",
        ("JsonResponse.__init__", "ListSerializer.data", "_delivery_result"),
    ),
    ("the rest of the view", ("incoming_data",)),
    ("Django: handler and middleware", ("WSGIHandler.__call__",)),
    ("gunicorn: connections, parsing, access log", ("ThreadWorker.handle", "ThreadWorker.run")),
]
OTHER = "other threads and the interpreter"


def part_of(stack: list[str]) -> str:
    names = {frame.split(" (")[0] for frame in stack}
    for part, markers in PARTS:
        if names.intersection(markers):
            return part
    return OTHER


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--seconds", type=float, default=12)
    args = parser.parse_args()
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not throughput.WRK or not Path(py_spy).exists():
        raise SystemExit("needs wrk (apt-get install wrk) and py-spy (pip install py-spy)")
    receiver = benchlib.start_receiver(0)
    database_url = benchlib.database_url(args.database, "profile")
    env = benchlib.app_env(database_url, WEB_CONCURRENCY="2", WEB_THREADS="8")
    benchlib.manage(env, "migrate", "-v0")
    [token] = benchlib.create_accounts(
        env, [[f"http://127.0.0.1:{receiver.port}/{i}" for i in range(throughput.DESTINATIONS)]]
    )
    port = benchlib.free_port()
    server = benchlib.serve(env, port)
    samples = benchlib.scratch() / "py-spy.txt"
    try:
        throughput.wrk_load(port, token, 16, 2, keep_alive=False)  # warm-up
        worker = benchlib.gunicorn_workers(server)[0]
        loaded: list[throughput.Load] = []
        load = threading.Thread(
            target=lambda: loaded.append(
                throughput.wrk_load(port, token, 16, args.seconds + 2, keep_alive=False)
            )
        )
        load.start()
        time.sleep(1)
        cpu_before, received_before = benchlib.process_cpu_seconds(worker), receiver.total()
        argv = [py_spy, "record", "--pid", str(worker), "--gil", "--rate", "250", "--nonblocking"]
        argv += ["--duration", f"{args.seconds:g}", "--format", "raw", "--output", str(samples)]
        subprocess.run(argv, check=True, capture_output=True)
        cpu = benchlib.process_cpu_seconds(worker) - cpu_before
        # This worker's share of the ingests: about half (the two processes split the CPU evenly).
        ingests = (receiver.total() - received_before) / throughput.DESTINATIONS / 2
        load.join()
    finally:
        server.stop()
        if args.database == "postgresql":
            benchlib.drop_database()
    counts: collections.Counter[str] = collections.Counter()
    for line in samples.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        counts[part_of(stack.split(";"))] += int(count)
    total = sum(counts.values())
    per_ingest = cpu / ingests * 1000
    rate = loaded[0].ingests / loaded[0].seconds
    print(
        f"{args.database}: {rate:.0f} ingests/s, worker CPU {per_ingest:.2f} ms per ingest "
        f"(about {ingests:.0f} ingests in {args.seconds:g} s), {total} samples holding the GIL"
    )
    print(f"{'part':<55} {'share':>6} {'ms/ingest':>10}")
    for part in [name for name, _ in PARTS] + [OTHER]:
        share = counts[part] / total
        print(f"{part:<55} {share * 100:>5.1f}% {share * per_ingest:>10.2f}")


if __name__ == "__main__":
    os.chdir(benchlib.ROOT)
    main()
