"""Sync-mode ingest throughput, server CPU and memory, beside a naive baseline and Django's ceiling.

On SQLite and on PostgreSQL, points an account's 3 destinations at a local receiver that answers at
once, and serves /server/incoming_data in turn with `make serve` (WEB_CONCURRENCY processes of
WEB_THREADS threads, gthread) for each app:
  datapusher  the product, sync mode;
  naive       bench/baselines.py's sequential baseline (requests.post to each destination in turn);
  ceiling     bench/baselines.py's bare JSON view: what Django serves through the same middleware.
CLIENTS closed-loop clients ingest for SECONDS, each ingest on a new connection (wrk's kept alive
with --keep-alive), from wrk when it is installed, else (or with --python-clients) from Python
threads. Prints per app: ingests per second; latency p50/p99; the CPU the server's processes used
per ingest (from /proc, all processes of gunicorn's group, so not the database server's: it holds
on a noisy machine where times drift); the CPU of this process per ingest (the receiver's, and the
clients' too without wrk); the peak RSS of the largest web worker; how the workers shared the CPU;
and what the receiver got, which must be one request per destination and ingest.

Usage:  .venv/bin/python bench/throughput.py [--apps datapusher naive ceiling]
            [--databases sqlite postgresql] [--clients 16] [--seconds 10] [--web-threads 8]
            [--web-concurrency 2] [--keep-alive | --python-clients]
            [--ingest-rate-limit RATE] [--redis-counters] [--log-level ERROR]
With --ingest-rate-limit (e.g. 1000000/second, a limit the load never reaches) the per-account
limiter counts every ingest, as in production (off by default); --redis-counters counts in Redis
(REDIS_URL=redis://127.0.0.1:6379/13) rather than in each process's memory. --log-level INFO writes
the line per ingest and per attempt that production writes (the default, ERROR, keeps runs quiet).
"""

import argparse
import os
import shutil
import statistics
import subprocess
import threading
import time
from dataclasses import dataclass

import benchlib

DESTINATIONS = 3
APPS = ("datapusher", "naive", "ceiling")
DATABASES = ("sqlite", "postgresql")
WRK = shutil.which("wrk")
WRK_THREADS = 2
RSS_INTERVAL = 0.2
WARM_UP_SECONDS = 2
# wrk's Lua script: the ingest request, and one line of figures at the end for this script to read.
# Each ingest on a new connection by default, as the Python clients do: gunicorn's workers take
# connections as they come, so a few kept-alive ones can all land on one worker while the others idle.
WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = [==[{body}]==]
wrk.headers["Content-Type"] = "application/json"
wrk.headers["CL-X-TOKEN"] = "{token}"
{connection}

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format("figures %.0f %.0f %.0f %.0f %.0f %.0f %.0f %.0f %.0f\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    errors.connect, errors.read, errors.write, errors.status, errors.timeout))
end
"""


@dataclass
class Load:
    ingests: int
    seconds: float
    p50: float  # seconds
    p99: float


def wrk_load(port: int, token: str, clients: int, seconds: float, keep_alive: bool) -> Load:
    """wrk with `clients` connections for `seconds`; fails on any error or non-2xx answer."""
    script = benchlib.scratch() / "ingest.lua"
    connection = "" if keep_alive else 'wrk.headers["Connection"] = "close"'
    script.write_text(WRK_SCRIPT.format(body=benchlib.BODY.decode(), token=token, connection=connection))
    argv = [WRK, "--threads", str(WRK_THREADS), "--connections", str(clients)]
    argv += ["--duration", f"{seconds:g}s", "--timeout", "60s", "--latency", "--script", str(script)]
    output = subprocess.run(
        [*argv, f"http://127.0.0.1:{port}{benchlib.INGEST_PATH}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    with (benchlib.scratch() / "wrk.log").open("a") as log:
        log.write(output)
    [line] = [line for line in output.splitlines() if line.startswith("figures ")]
    requests, duration, p50, p99, connect, read, write, status, timeout = map(int, line.split()[1:])
    if connect or read or write or status or timeout:
        raise SystemExit(
            f"wrk: {status} answers 4xx/5xx, socket errors connect {connect}, read {read}, "
            f"write {write}, timeout {timeout}\n{output}"
        )
    return Load(requests, duration / 1e6, p50 / 1e6, p99 / 1e6)


def python_load(port: int, token: str, clients: int, seconds: float, app: str) -> Load:
    """`clients` threads, each ingesting one after another (a new connection each) for `seconds`;
    fails on any answer but 200 (with every delivery succeeded, for Data Pusher)."""
    latencies: list[float] = []
    failures: list[str] = []
    started = time.monotonic()
    stop = started + seconds

    def client():
        while time.monotonic() < stop and not failures:
            status, answer, took = benchlib.ingest(port, token)
            delivered = app != "datapusher" or (
                [d["status"] for d in answer["deliveries"]] == ["succeeded"] * DESTINATIONS
            )
            if status != 200 or answer.get("success") is not True or not delivered:
                failures.append(f"{status} {answer}")
            latencies.append(took)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:  # raised here: a SystemExit in a thread would end only that thread, silently
        raise SystemExit(f"unexpected answer: {failures[0]}")
    return Load(
        len(latencies),
        time.monotonic() - started,
        statistics.median(latencies),
        benchlib.percentile(latencies, 0.99),
    )


def load(app: str, port: int, args: argparse.Namespace, token: str, seconds: float) -> Load:
    if args.wrk:
        return wrk_load(port, token, args.clients, seconds, args.keep_alive)
    return python_load(port, token, args.clients, seconds, app)


def received_when_quiet(receiver: benchlib.Receiver) -> int:
    """The requests the receiver has had, once none came for half a second."""
    count = -1
    while count != (count := receiver.total()):
        time.sleep(0.5)
    return count


def measure(
    app: str, env: dict[str, str], token: str, receiver: benchlib.Receiver, args: argparse.Namespace
) -> str:
    """One app served and loaded: its row of figures."""
    if app != "datapusher":
        env = {**env, "DJANGO_SETTINGS_MODULE": "bench.baselines", "BENCH_BASELINE": app}
    port = benchlib.free_port()
    server = benchlib.serve(env, port)
    try:
        load(app, port, args, token, WARM_UP_SECONDS)  # imports, connections
        received_before = received_when_quiet(receiver)
        workers = benchlib.gunicorn_workers(server)
        pgid = os.getpgid(server.popen.pid)
        cpu_before, own_cpu_before = benchlib.cpu_seconds(pgid), time.process_time()
        workers_cpu_before = [benchlib.process_cpu_seconds(pid) for pid in workers]
        with benchlib.RssPeaks(workers, RSS_INTERVAL) as rss:
            figures = load(app, port, args, token, args.seconds)
        cpu = benchlib.cpu_seconds(pgid) - cpu_before
        workers_cpu = [
            benchlib.process_cpu_seconds(pid) - before
            for pid, before in zip(workers, workers_cpu_before, strict=True)
        ]
        own_cpu = time.process_time() - own_cpu_before
        received = received_when_quiet(receiver) - received_before
    finally:
        server.stop()
    # wrk stops with up to `clients` ingests in flight, which the server still delivers.
    expected = 0 if app == "ceiling" else DESTINATIONS * figures.ingests
    in_flight = 0 if app == "ceiling" else DESTINATIONS * args.clients
    if not expected <= received <= expected + in_flight:
        raise SystemExit(f"{app}: the receiver got {received} requests for {figures.ingests} ingests")
    per_ingest = 1000 / figures.ingests
    split = "/".join(f"{100 * c / (sum(workers_cpu) or 1):.0f}" for c in workers_cpu)
    return (
        f"{app:<10} {figures.ingests / figures.seconds:>9.0f} {figures.p50 * 1000:>7.1f} "
        f"{figures.p99 * 1000:>7.1f} {cpu * per_ingest:>12.2f} {own_cpu * per_ingest:>14.2f} "
        f"{max(rss.peak.values()):>13.1f} {split:>10}   {received} for {figures.ingests} ingests"
    )


REDIS_COUNTERS = "redis://127.0.0.1:6379/13"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apps", nargs="+", choices=APPS, default=list(APPS))
    parser.add_argument("--databases", nargs="+", choices=DATABASES, default=list(DATABASES))
    parser.add_argument("--clients", type=int, default=16, help="connections")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--web-threads", default="8")
    parser.add_argument("--web-concurrency", default="2")
    parser.add_argument("--ingest-rate-limit", default="off", help="DATAPUSHER_INGEST_RATE_LIMIT")
    parser.add_argument("--redis-counters", action="store_true", help="REDIS_URL: counters in Redis")
    parser.add_argument("--log-level", default="ERROR", help="LOG_LEVEL of the app's processes")
    client = parser.add_mutually_exclusive_group()
    client.add_argument("--keep-alive", action="store_true", help="wrk keeps its connections open")
    client.add_argument("--python-clients", action="store_true", help="Python threads even with wrk")
    args = parser.parse_args()
    args.wrk = WRK and not args.python_clients
    receiver = benchlib.start_receiver(0)
    print(
        f"sync throughput: {DESTINATIONS} destinations answering at once, {args.clients} clients, "
        f"{args.seconds:g} s, make serve with WEB_CONCURRENCY={args.web_concurrency} "
        f"WEB_THREADS={args.web_threads}, DATAPUSHER_INGEST_RATE_LIMIT={args.ingest_rate_limit}, "
        f"counters {'in Redis' if args.redis_counters else 'per process'}, LOG_LEVEL={args.log_level}"
    )
    if args.wrk:
        connections = "kept alive" if args.keep_alive else "Connection: close, a new one per ingest"
        print(f"load: {WRK} --threads {WRK_THREADS} --connections {args.clients} ({connections})")
    else:
        reason = "as asked" if WRK else "no wrk found"
        print(f"load: {args.clients} Python client threads, a new connection per ingest ({reason})")
    for database in args.databases:
        database_url = benchlib.database_url(database, "throughput")
        env = benchlib.app_env(
            database_url,
            WEB_THREADS=args.web_threads,
            WEB_CONCURRENCY=args.web_concurrency,
            DATAPUSHER_INGEST_RATE_LIMIT=args.ingest_rate_limit,
            LOG_LEVEL=args.log_level,
            **({"REDIS_URL": REDIS_COUNTERS} if args.redis_counters else {}),
        )
        benchlib.manage(env, "migrate", "-v0")
        urls = [f"http://127.0.0.1:{receiver.port}/{i}" for i in range(DESTINATIONS)]
        [token] = benchlib.create_accounts(env, [urls])
        print(f"\n{database}")
        # This process's CPU: the receiver's, and the clients' too without wrk.
        local_cpu = "receiver CPU" if args.wrk else "client+rcv CPU"
        print(
            f"{'app':<10} {'ingests/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'server CPU':>12} "
            f"{local_cpu:>14} {'worker RSS':>13} {'worker CPU':>10}   receiver got"
        )
        print(
            f"{'':<10} {'':>9} {'':>7} {'':>7} {'ms/ingest':>12} {'ms/ingest':>14} {'peak MB':>13} "
            f"{'split %':>10}"
        )
        for app in args.apps:
            print(measure(app, env, token, receiver, args), flush=True)
    if "postgresql" in args.databases:
        benchlib.drop_database()


if __name__ == "__main__":
    main()
