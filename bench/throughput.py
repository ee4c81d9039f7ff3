"""Sync-mode ingest throughput and server CPU per ingest, with fast destinations.

Serves Data Pusher with `make serve` (sync mode) on SQLite and on PostgreSQL, points 3 destinations
at a local receiver that answers at once, and runs CLIENTS closed-loop clients for SECONDS. Prints
ingests per second, the latency p50/p99, and the CPU the server processes used per ingest (from
/proc, all processes of gunicorn's group), which holds on a noisy machine where times drift.

Usage:  .venv/bin/python bench/throughput.py [--clients 16] [--seconds 10] [--web-threads 8]
"""

import argparse
import os
import statistics
import threading
import time

import benchlib

DESTINATIONS = 3


def cpu_seconds(pgid: int) -> float:
    """User + system CPU of every live process in the process group."""
    ticks = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[2]) == pgid:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def load(port: int, token: str, clients: int, seconds: float) -> list[float]:
    """Latencies of every ingest `clients` threads made, one after another each, for `seconds`."""
    latencies: list[float] = []
    stop = time.monotonic() + seconds

    def client():
        while time.monotonic() < stop:
            status, answer, took = benchlib.ingest(port, token)
            if status != 200 or [d["status"] for d in answer["deliveries"]] != ["succeeded"] * DESTINATIONS:
                raise SystemExit(f"unexpected answer: {status} {answer}")
            latencies.append(took)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--web-threads", default="8")
    args = parser.parse_args()
    receiver = benchlib.start_receiver(0)
    print(
        f"sync throughput: {DESTINATIONS} destinations answering at once, {args.clients} clients, "
        f"{args.seconds:g} s, make serve with WEB_THREADS={args.web_threads}"
    )
    for database in ("sqlite", "postgresql"):
        if database == "sqlite":
            database_url = f"sqlite:///{benchlib.scratch()}/throughput.sqlite3"
        else:
            database_url = benchlib.reset_database()
        env = benchlib.app_env(database_url, WEB_THREADS=args.web_threads)
        benchlib.manage(env, "migrate", "-v0")
        urls = [f"http://127.0.0.1:{receiver.port}/{i}" for i in range(DESTINATIONS)]
        [token] = benchlib.create_accounts(env, [urls])
        port = benchlib.free_port()
        server = benchlib.serve(env, port)
        try:
            load(port, token, args.clients, 2)  # warm-up: imports, connections
            pgid = os.getpgid(server.popen.pid)
            cpu_before, started = cpu_seconds(pgid), time.monotonic()
            latencies = load(port, token, args.clients, args.seconds)
            cpu, elapsed = cpu_seconds(pgid) - cpu_before, time.monotonic() - started
        finally:
            server.stop()
        print(
            f"  {database}: {len(latencies) / elapsed:.0f} ingests/s, "
            f"p50 {statistics.median(latencies) * 1000:.1f} ms, "
            f"p99 {benchlib.percentile(latencies, 0.99) * 1000:.1f} ms, "
            f"server CPU {cpu / len(latencies) * 1000:.2f} ms per ingest"
        )
    benchlib.drop_database()


if __name__ == "__main__":
    main()
