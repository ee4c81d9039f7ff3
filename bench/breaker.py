"""The circuit breaker: a destination down for 10 minutes of simulated time under a steady ingest.

Serves Data Pusher in queue mode (`make serve`, the dispatcher, one worker `--pool threads
--concurrency 32`) on a scratch PostgreSQL database and Redis, with every time setting divided by
SCALE: DATAPUSHER_BREAKER_COOLDOWN 60 s, DATAPUSHER_BREAKER_COOLDOWN_MAX 3600 s,
DATAPUSHER_RETRY_SCHEDULE (5, 300, 1800, 7200, 18000, 36000, 36000 s), DATAPUSHER_DISABLE_AFTER
(5 days) and the outage (600 s). The dispatcher runs every 0.2 s, not scaled.

For each breaker setting (DATAPUSHER_BREAKER_FAILURES, and 0: off) and each way of being down (`503`:
answered at once; `refused`: the port closed, connections refused), one account ingests RATE events
a second to one destination, and another HEALTHY_RATE a second to a destination that stays up. After
WARM_UP seconds the first destination goes down for the outage, then answers 200 again; the ingest
goes on for WARM_UP more seconds. Printed: the requests the down destination got while down (the
attempts recorded with another answer than 200, or none), against FAILURES + the failed probes
(the circuit's trips, polled); once it is up, the time until its backlog is delivered, the
deliveries succeeded, failed and sent twice, and how close to created order the backlog drained; the
healthy destination's deliveries during the outage.

Needs PostgreSQL and Redis (the ones `.ci/run` starts). Usage:
    .venv/bin/python bench/breaker.py [--scale 60] [--rate 20] [--healthy-rate 5] [--failures 10]
"""

import argparse
import contextlib
import socket
import statistics
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler

import benchlib
import psycopg
import redis

DATABASE = "bench_breaker"
BROKER = f"redis://127.0.0.1:{benchlib.REDIS_PORT}/9"  # not the tests' 12-15, nor the other benches' 14
RETRY_SCHEDULE = (5, 300, 1800, 7200, 18000, 36000, 36000)
OUTAGE = 600
WARM_UP = 2.0
DISPATCH_INTERVAL = 0.2
MODES = ("503", "refused")


class SwitchableReceiver:
    """A destination on a fixed loopback port that answers 200, or is down: answers 503 at once, or
    refuses connections (listener closed, open keep-alive connections shut). Counts its answers."""

    def __init__(self) -> None:
        self.port = benchlib.free_port()
        self.url = f"http://127.0.0.1:{self.port}/in"
        self.answer = 200
        self.answered: Counter[int] = Counter()
        self.lock = threading.Lock()
        self.connections: set[socket.socket] = set()
        self.server = self._listen()

    def _listen(self) -> benchlib._Server:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                super().setup()
                with receiver.lock:
                    receiver.connections.add(self.connection)

            def finish(self):
                with receiver.lock:
                    receiver.connections.discard(self.connection)
                super().finish()

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.lock:
                    status = receiver.answer
                    receiver.answered[status] += 1
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        server = benchlib._Server(("127.0.0.1", self.port), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server

    def down(self, mode: str) -> None:
        if mode == "503":
            with self.lock:
                self.answer = 503
            return
        self.server.shutdown()
        self.server.server_close()
        with self.lock:
            for connection in self.connections:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)  # the sender's pooled connection is dead

    def up(self, mode: str) -> None:
        if mode == "refused":
            self.server = self._listen()
        with self.lock:
            self.answer = 200


@dataclass
class CircuitWatch:
    """Polls a destination's circuit every 50 ms in a thread: when it first opened, and its most
    trips (one per opening: the first, then one per failed probe)."""

    database_url: str
    destination_id: int
    opened_at: datetime | None = None
    trips: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()

    def _poll(self) -> None:
        url = self.database_url.replace("postgres://", "postgresql://", 1)
        query = "SELECT circuit_opened_at, circuit_trips FROM destinations_destination WHERE id = %s"
        with psycopg.connect(url, autocommit=True) as conn:
            while True:
                stopping = self.stop.wait(0.05)  # and read once more when told to stop
                opened_at, trips = conn.execute(query, (self.destination_id,)).fetchone()
                self.opened_at = self.opened_at or opened_at
                self.trips = max(self.trips, trips)
                if stopping:
                    return

    def finish(self) -> None:
        self.stop.set()
        self.thread.join()


@dataclass
class Outcome:
    requests_down: int
    before_open: int
    probes: int
    deliveries: int
    succeeded: int
    failed: int
    duplicates: int
    max_attempts: int
    first: float
    drain: float
    in_order: float
    healthy: str
    ingests_refused: int
    opened_after: float | None = None
    answered_503: int | None = None


def concordance(order: list[datetime]) -> float:
    """Of all pairs of the backlog taken in created order, the fraction delivered in that order."""
    pairs = concordant = 0
    for i, first in enumerate(order):
        for later in order[i + 1 :]:
            pairs += 1
            concordant += first < later
    return concordant / pairs if pairs else 1.0


def ingest_steadily(port: int, streams: list[tuple[str, float]], seconds: float) -> int:
    """Ingests at steady rates (token, per second) for `seconds`, open loop; how many were not 202."""
    schedule = sorted((i / rate, token) for token, rate in streams for i in range(round(seconds * rate)))
    began = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        futures = []
        for at, token in schedule:
            time.sleep(max(0.0, began + at - time.monotonic()))
            futures.append(pool.submit(benchlib.ingest, port, token))
    return sum(future.result()[0] != 202 for future in futures)


def outage(
    *,
    port: int,
    database_url: str,
    tokens: list[str],
    destination_ids: list[int],
    receiver: SwitchableReceiver,
    mode: str,
    args: argparse.Namespace,
) -> Outcome:
    """One run: ingest to the destination that goes down and to the healthy one (`tokens` and
    `destination_ids` in that order), the first down for the outage then up; figures once drained."""
    down_id, healthy_id = destination_ids
    seconds = OUTAGE / args.scale
    streams = [(tokens[0], args.rate), (tokens[1], args.healthy_rate)]
    with ThreadPoolExecutor(1) as background:
        refused = background.submit(ingest_steadily, port, streams, WARM_UP + seconds + WARM_UP)
        time.sleep(WARM_UP)
        watch = CircuitWatch(database_url, down_id)
        receiver.down(mode)
        went_down = datetime.now(UTC)
        time.sleep(seconds)
        watch.finish()
        receiver.up(mode)
        came_up = datetime.now(UTC)
        ingests_refused = refused.result()
    benchlib.wait_until(
        lambda: (
            not benchlib.sql(
                database_url,
                "SELECT 1 FROM server_delivery WHERE destination_id = ANY(%s) AND status = 'pending' LIMIT 1",
                (destination_ids,),
            )
        ),
        180,
        "the deliveries were not all done within 180 s of the recovery",
    )
    deliveries = benchlib.sql(
        database_url,
        "SELECT destination_id, status, created_at, processed_at, attempt_count, "
        "(SELECT count(*) FROM server_attempt a WHERE a.delivery_id = d.id AND a.status_code = 200) "
        "FROM server_delivery d WHERE destination_id = ANY(%s) ORDER BY created_at, id",
        (destination_ids,),
    )
    failures = [
        started
        for (started,) in benchlib.sql(
            database_url,
            "SELECT started_at FROM server_attempt WHERE destination_id = %s "
            "AND status_code IS DISTINCT FROM 200",
            (down_id,),
        )
    ]
    down = [row for row in deliveries if row[0] == down_id]
    backlog = [processed for _, _, created, processed, _, _ in down if created < came_up < processed]
    healthy = [
        (processed - created).total_seconds()
        for destination, status, created, processed, _, _ in deliveries
        if destination == healthy_id and went_down <= created <= came_up and status == "succeeded"
    ]
    healthy_total = sum(1 for row in deliveries if row[0] == healthy_id and went_down <= row[2] <= came_up)
    statuses = Counter(row[1] for row in down)
    return Outcome(
        requests_down=len(failures),
        before_open=sum(watch.opened_at is None or started <= watch.opened_at for started in failures),
        probes=max(watch.trips - 1, 0),
        opened_after=watch.opened_at and (watch.opened_at - went_down).total_seconds(),
        deliveries=len(down),
        succeeded=statuses["succeeded"],
        failed=statuses["failed"],
        duplicates=sum(row[5] > 1 for row in down),
        max_attempts=max(row[4] for row in down),
        first=(min(row[3] for row in down if row[3] > came_up) - came_up).total_seconds(),
        drain=(max(row[3] for row in down) - came_up).total_seconds(),
        in_order=concordance(backlog),
        healthy=(
            f"{len(healthy)}/{healthy_total} succeeded, p50 {statistics.median(healthy) * 1000:.0f} ms"
            if healthy
            else f"0/{healthy_total} succeeded"
        ),
        ingests_refused=ingests_refused,
        answered_503=receiver.answered[503] if mode == "503" else None,
    )


def report(label: str, outcome: Outcome, *, failures: int, scale: float) -> list[str]:
    """One column of the table, and a line of the run."""
    bound = failures + outcome.probes
    extra = outcome.requests_down - bound
    seen = "" if outcome.answered_503 is None else f" (the receiver answered {outcome.answered_503} x 503)"
    print(
        f"  {label}: {outcome.requests_down} requests while down{seen}"
        + (
            f", the circuit opened {outcome.opened_after:.2f} s in, {outcome.before_open} begun before"
            if outcome.opened_after is not None
            else ""
        )
        + f"; after the recovery, first delivered {outcome.first:.1f} s, all {outcome.deliveries} "
        f"{outcome.drain:.1f} s ({outcome.drain * scale / 60:.1f} simulated min); "
        f"healthy destination: {outcome.healthy}"
    )
    if outcome.ingests_refused:
        print(f"    note: {outcome.ingests_refused} ingests not answered 202")
    within = "within" if extra <= 0 else f"+{extra} in flight"
    return [
        str(outcome.requests_down),
        f"{outcome.probes}" if outcome.opened_after is not None else "-",
        f"{bound}, {within}" if outcome.opened_after is not None else "-",
        f"{outcome.first:.1f} s / {outcome.first * scale / 60:.0f} min",
        f"{outcome.drain:.1f} s / {outcome.drain * scale / 60:.0f} min",
        f"{outcome.succeeded}/{outcome.deliveries}",
        str(outcome.failed),
        str(outcome.duplicates),
        str(outcome.max_attempts),
        f"{outcome.in_order:.2f}",
    ]


ROWS = (
    "requests while down",
    "failed probes (trips - 1)",
    "FAILURES + failed probes: the bound",
    "first delivered after recovery (real / simulated)",
    "all delivered after recovery (real / simulated)",
    "deliveries succeeded",
    "deliveries failed",
    "deliveries answered 200 twice",
    "most attempts of one delivery (its success included)",
    "backlog pairs delivered in created order",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=60, help="simulated seconds per real second")
    parser.add_argument("--rate", type=float, default=20, help="ingests/s to the destination that goes down")
    parser.add_argument("--healthy-rate", type=float, default=5, help="ingests/s to the healthy one")
    parser.add_argument("--failures", type=int, default=10, help="DATAPUSHER_BREAKER_FAILURES when on")
    args = parser.parse_args()
    scale = args.scale
    times = {
        "DATAPUSHER_BREAKER_COOLDOWN": f"{60 / scale:g}",
        "DATAPUSHER_BREAKER_COOLDOWN_MAX": f"{3600 / scale:g}",
        "DATAPUSHER_RETRY_SCHEDULE": ",".join(f"{s / scale:g}" for s in RETRY_SCHEDULE),
        "DATAPUSHER_DISABLE_AFTER": f"{432000 / scale:g}",
        "DATAPUSHER_DISPATCH_INTERVAL": f"{DISPATCH_INTERVAL:g}",
    }
    print(
        f"circuit breaker: a destination down {OUTAGE / scale:g} s ({OUTAGE / 60:g} simulated min, scale "
        f"{scale:g}), {args.rate:g} ingests/s to it and {args.healthy_rate:g}/s to a healthy one, queue "
        f"mode, make serve (2 x 32), 1 worker --pool threads --concurrency 32, PostgreSQL, Redis\n"
        f"  {', '.join(f'{k}={v}' for k, v in times.items())} (the dispatcher's interval is not scaled: "
        f"{DISPATCH_INTERVAL * scale:g} simulated s)\n  output of the processes: {benchlib.scratch()}"
    )
    columns: dict[str, list[str]] = {}
    try:
        database_url = benchlib.reset_database(DATABASE)
        redis.Redis.from_url(BROKER).flushdb()
        benchlib.manage(benchlib.queue_env(database_url, BROKER), "migrate", "-v0")
        receivers = {
            (failures, mode): SwitchableReceiver() for failures in (args.failures, 0) for mode in MODES
        }
        healthy = benchlib.start_receiver(0)
        urls = {
            key: [receiver.url, f"http://127.0.0.1:{healthy.port}/{receiver.port}"]
            for key, receiver in receivers.items()
        }
        all_tokens = benchlib.create_accounts(
            benchlib.queue_env(database_url, BROKER), [[url] for pair in urls.values() for url in pair]
        )
        tokens = {key: all_tokens[2 * i : 2 * i + 2] for i, key in enumerate(receivers)}
        ids = dict(benchlib.sql(database_url, "SELECT url, id FROM destinations_destination"))
        for failures in (args.failures, 0):
            env = benchlib.queue_env(database_url, BROKER) | times
            env["DATAPUSHER_BREAKER_FAILURES"] = str(failures)
            port = benchlib.free_port()
            started = [benchlib.serve(env, port), benchlib.dispatcher(env), benchlib.worker(env, 32)]
            try:
                for _ in range(10):  # imports, connections
                    benchlib.ingest(port, tokens[failures, MODES[0]][1])
                for mode in MODES:
                    outcome = outage(
                        port=port,
                        database_url=database_url,
                        tokens=tokens[failures, mode],
                        destination_ids=[ids[url] for url in urls[failures, mode]],
                        receiver=receivers[failures, mode],
                        mode=mode,
                        args=args,
                    )
                    label = f"breaker {'on' if failures else 'off'} ({failures}), {mode}"
                    columns[label] = report(label, outcome, failures=failures, scale=scale)
            finally:
                for process in started:
                    process.stop()
    finally:
        benchlib.drop_database(DATABASE)
    print()
    table(columns)


def table(columns: dict[str, list[str]]) -> None:
    """Prints the ROWS with one column per run, each as wide as its widest cell."""
    widths = [max(map(len, [label, *cells])) for label, cells in columns.items()]
    rows = [("", list(columns))] + [
        (row, [cells[i] for cells in columns.values()]) for i, row in enumerate(ROWS)
    ]
    for name, cells in rows:
        padded = (f"{cell:>{width}}" for cell, width in zip(cells, widths, strict=True))
        print(f"{name:{max(map(len, ROWS))}} | " + " | ".join(padded))


if __name__ == "__main__":
    main()
