"""Helpers shared by the benchmark scripts: receivers, a broker proxy, the app's processes, timing."""

import contextlib
import functools
import http.client
import json
import os
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
BENCH_DATABASE = "datapusher_bench"  # scratch PostgreSQL database, dropped and made again
REDIS_PORT = 6379
BROKER = f"redis://127.0.0.1:{REDIS_PORT}/14"
INGEST_PATH = "/server/incoming_data"
BODY = json.dumps({"order": 42, "items": [1, 2, 3]}).encode()


@functools.cache
def scratch() -> Path:
    """This run's own directory: the output of the processes it starts, its SQLite databases."""
    return Path(tempfile.mkdtemp(prefix="datapusher-bench-"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int) -> None:
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("the server did not start")


def wait_until(predicate: Callable[[], bool], timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(message)
        time.sleep(0.1)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def latency_summary(seconds: list[float]) -> str:
    """p50, p99 and max of request times, in ms."""
    return (
        f"p50 {statistics.median(seconds) * 1000:.1f} ms, p99 {percentile(seconds, 0.99) * 1000:.1f} ms, "
        f"max {max(seconds) * 1000:.1f} ms"
    )


# --- Destinations -----------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # The listen backlog: socketserver calls listen() in the constructor, so it must be set on the
    # class. The default (5) drops bursts of connections, which look like connect timeouts.
    request_queue_size = 512


@dataclass
class Receiver:
    """A local destination: answers every request 200 after `delay` seconds, and counts the
    webhook-ids it received. With `hold_first`, the first request of each webhook-id is held until
    `release` is set (at most 10 minutes)."""

    delay: float
    hold_first: bool = False
    port: int = 0
    webhook_ids: Counter[str] = field(default_factory=Counter)
    release: threading.Event = field(default_factory=threading.Event)
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def total(self) -> int:
        """The requests received so far."""
        with self.lock:
            return self.webhook_ids.total()


def start_receiver(delay: float, *, hold_first: bool = False) -> Receiver:
    """A keep-alive HTTP server on loopback, in threads of this process."""
    receiver = Receiver(delay=delay, hold_first=hold_first)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _handle(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            webhook_id = self.headers.get("webhook-id", "")
            with receiver.lock:
                first = receiver.webhook_ids[webhook_id] == 0
                receiver.webhook_ids[webhook_id] += 1
                receiver.in_flight += 1
                receiver.max_in_flight = max(receiver.max_in_flight, receiver.in_flight)
            try:
                if receiver.hold_first and first:
                    receiver.release.wait(600)
                time.sleep(receiver.delay)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
            finally:
                with receiver.lock:
                    receiver.in_flight -= 1

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        def log_message(self, *args):
            pass

    server = _Server(("127.0.0.1", 0), Handler)
    receiver.port = server.server_port
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return receiver


class BrokerProxy:
    """A TCP proxy in front of a broker on loopback. Once paused it still accepts connections and
    takes what it is sent, and never answers: a wedged broker."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.forwarding = threading.Event()
        self.forwarding.set()
        threading.Thread(target=self._accept, daemon=True).start()

    def pause(self) -> None:
        self.forwarding.clear()

    def _accept(self) -> None:
        while True:
            client, _ = self.listener.accept()
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                self.forwarding.wait()
                sink.sendall(data)
        source.close()
        sink.close()


# --- The app: databases, accounts, processes ---------------------------------------------------------


def app_env(database_url: str, **settings: str) -> dict[str, str]:
    """The environment of the app's processes: production settings (each at its default unless
    given), destinations on loopback allowed, quiet logs, and no per-account ingest rate limit (the
    benchmarks push one account far past the default 50/second; throughput.py can turn it on)."""
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "SECRET_KEY": "bench",
        "DEBUG": "false",
        "DATAPUSHER_ALLOWED_NETWORKS": "127.0.0.0/8",
        "DATAPUSHER_INGEST_RATE_LIMIT": "off",
        "LOG_LEVEL": "ERROR",
        **settings,
    }


def queue_env(database_url: str, broker_url: str = BROKER) -> dict[str, str]:
    """app_env in queue mode."""
    return app_env(database_url, DATAPUSHER_DELIVERY_MODE="queue", CELERY_BROKER_URL=broker_url)


def database_url(database: str, name: str) -> str:
    """A scratch database for a run: `sqlite` (a file `name`.sqlite3 in this run's folder) or
    `postgresql` (reset_database())."""
    if database == "sqlite":
        return f"sqlite:///{scratch()}/{name}.sqlite3"
    return reset_database()


def reset_database(name: str = BENCH_DATABASE) -> str:
    """A new, empty PostgreSQL database (dropped first if it exists); returns its URL."""
    drop_database(name)
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return f"postgres://postgres@127.0.0.1:5432/{name}"


def drop_database(name: str = BENCH_DATABASE) -> None:
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def sql(database_url: str, query: str, params: tuple = ()) -> list[tuple]:
    """Rows of a query on the app's database (PostgreSQL or SQLite), with `params` in the
    database's placeholder style (%s, ?)."""
    if database_url.startswith("sqlite:///"):
        with contextlib.closing(sqlite3.connect(database_url.removeprefix("sqlite:///"))) as conn:
            return conn.execute(query, params).fetchall()
    with psycopg.connect(database_url.replace("postgres://", "postgresql://", 1)) as conn:
        return conn.execute(query, params).fetchall()


def manage(env: dict[str, str], *args: str) -> str:
    """Run `manage.py` with `env`; its stdout."""
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    ).stdout


def create_accounts(env: dict[str, str], destination_urls: list[list[str]]) -> list[str]:
    """One account per list of URLs, with a POST destination to each; their app secret tokens."""
    script = f"""
import uuid
from accounts.services import account_create
from destinations.services import destination_create
for urls in {destination_urls!r}:
    account = account_create(email=f"{{uuid.uuid4().hex}}@example.com", account_name="bench")
    for url in urls:
        destination_create(account=account, url=url, http_method="POST", headers={{}})
    print(account.app_secret_token)
"""
    return manage(env, "shell", "-c", script).split()[-len(destination_urls) :]


def call(port: int, method: str, path: str, headers: dict[str, str], body: bytes | None = None):
    """(status, JSON answer, seconds) of one request on a new connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        started = time.perf_counter()
        conn.request(method, path, body, headers)
        response = conn.getresponse()
        answer = json.loads(response.read())
        return response.status, answer, time.perf_counter() - started
    finally:
        conn.close()


def ingest(port: int, token: str) -> tuple[int, Any, float]:
    """(status, JSON answer, seconds) of one POST of BODY to the ingest."""
    return call(port, "POST", INGEST_PATH, {"Content-Type": "application/json", "CL-X-TOKEN": token}, BODY)


class Process:
    """A process of ours in its own process group (so a signal reaches all its children), its
    output in scratch()/<name>.log."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        self.log = scratch() / f"{name}.log"
        with self.log.open("a") as log:
            self.popen = subprocess.Popen(
                argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def kill(self) -> None:
        """SIGKILL the whole group at once, as a crash or an OOM kill would."""
        os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait()

    def stop(self) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(40)
            except subprocess.TimeoutExpired:
                self.kill()


def serve(env: dict[str, str], port: int) -> Process:
    """`make serve` on `port`: gunicorn with the Makefile's sizes (WEB_CONCURRENCY = cores,
    WEB_THREADS = 32, unless `env` sets them); returns once it listens."""
    # The virtualenv is the one these scripts run in, installed already: make must not install it
    # again because a checkout's requirements files are newer than its stamp.
    argv = ["make", "--no-print-directory", "--old-file=.venv/.installed", "serve"]
    server = Process("web", [*argv, f"BIND=127.0.0.1:{port}"], env)
    wait_for_port(port)
    return server


# --- What the app's processes use, from /proc -----------------------------------------------------------


def _stat(pid: int | str) -> list[str] | None:
    """The fields after the command name in /proc/<pid>/stat; None once the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _group_stats(pgid: int) -> dict[int, list[str]]:
    """_stat() of every live process in the process group."""
    stats = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        fields = _stat(pid)
        if fields is not None and int(fields[2]) == pgid:
            stats[int(pid)] = fields
    return stats


def _cpu_seconds(fields: list[str] | None) -> float:
    """User + system CPU of a process from its _stat()."""
    return 0.0 if fields is None else (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pgid: int) -> float:
    """User + system CPU of every live process in the process group."""
    return sum(map(_cpu_seconds, _group_stats(pgid).values()))


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of one process (0 once it is gone)."""
    return _cpu_seconds(_stat(pid))


def gunicorn_workers(server: Process) -> list[int]:
    """The pids of the web workers of a `serve()`: the processes of its group that started no other
    (make and gunicorn's arbiter did)."""
    stats = _group_stats(os.getpgid(server.popen.pid))
    parents = {int(fields[1]) for fields in stats.values()}
    return sorted(pid for pid in stats if pid not in parents)


def rss_mb(pid: int) -> float:
    """The resident memory of a process (VmRSS), in MB; 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class RssPeaks:
    """In its `with` block, samples the RSS of `pids` every `interval` seconds in a thread; `peak`
    holds each one's largest sample, in MB."""

    def __init__(self, pids: list[int], interval: float) -> None:
        self.pids = pids
        self.interval = interval
        self.peak = {pid: rss_mb(pid) for pid in pids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            for pid in self.pids:
                self.peak[pid] = max(self.peak[pid], rss_mb(pid))

    def __enter__(self) -> "RssPeaks":
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        for pid in self.pids:  # the last moment too
            self.peak[pid] = max(self.peak[pid], rss_mb(pid))


def worker(env: dict[str, str], concurrency: int = 32, name: str = "bench") -> Process:
    """A Celery worker as `make worker` runs it (--pool threads)."""
    argv = [sys.executable, "-m", "celery", "-A", "datapusher", "worker", "--pool", "threads"]
    argv += ["--concurrency", str(concurrency), "--loglevel", "WARNING"]
    argv += ["--without-mingle", "--without-gossip", "--hostname", f"{name}@%h"]
    return Process(name, argv, env)


def dispatcher(env: dict[str, str]) -> Process:
    """`manage.py dispatch`, as `make dispatcher` runs it."""
    return Process("dispatcher", [sys.executable, "manage.py", "dispatch"], env)
