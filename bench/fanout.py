"""Ingest latency against N slow destinations (each answers after a fixed delay).

Serves Data Pusher (`manage.py runserver --noreload`, threaded) on a scratch SQLite database,
points N destinations at a local receiver that sleeps DELAY before answering 200, and times
sequential POSTs to /server/incoming_data from this process. Prints p50/p95 per N and the ratio
of p50 to the delay: 1.0 would be perfect overlap; sequential fan-out would be about N.

Usage:  .venv/bin/python bench/fanout.py [--delay-ms 200] [--requests 40] [--counts 1,5,10,20]
"""

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import free_port, percentile, start_receiver, wait_for_port

ROOT = Path(__file__).resolve().parent.parent


def make_accounts(env: dict[str, str], receiver_port: int, counts: list[int]) -> dict[int, str]:
    """One account per N with N destinations; returns N -> app secret token."""
    script = f"""
import json
from accounts.services import account_create
from destinations.services import destination_create
tokens = {{}}
for n in {counts!r}:
    account = account_create(email=f"bench{{n}}@example.com", account_name=f"bench {{n}}")
    for i in range(n):
        destination_create(account=account, url=f"http://127.0.0.1:{receiver_port}/{{n}}/{{i}}",
                           http_method="POST", headers={{}})
    tokens[n] = account.app_secret_token
print(json.dumps(tokens))
"""
    out = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", script],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return {int(n): token for n, token in json.loads(out.strip().splitlines()[-1]).items()}


def time_ingest(port: int, token: str, n: int) -> float:
    body = json.dumps({"order": 42, "items": [1, 2, 3]}).encode()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    started = time.perf_counter()
    conn.request(
        "POST", "/server/incoming_data", body, {"Content-Type": "application/json", "CL-X-TOKEN": token}
    )
    response = conn.getresponse()
    answer = json.loads(response.read())
    elapsed = time.perf_counter() - started
    conn.close()
    statuses = [d["status"] for d in answer["deliveries"]]
    if response.status != 200 or statuses != ["succeeded"] * n:
        raise SystemExit(f"unexpected answer: {response.status} {statuses}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delay-ms", type=int, default=200)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--counts", default="1,5,10,20")
    args = parser.parse_args()
    delay = args.delay_ms / 1000
    counts = [int(n) for n in args.counts.split(",")]

    work = tempfile.mkdtemp(prefix="datapusher-bench-")
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{work}/bench.sqlite3",
        "SECRET_KEY": "bench",
        "DEBUG": "false",
        "DATAPUSHER_ALLOWED_NETWORKS": "127.0.0.0/8",
        "LOG_LEVEL": "ERROR",
    }
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    receiver_port = start_receiver(delay)
    tokens = make_accounts(env, receiver_port, counts)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        print(f"ingest latency: destinations answer after {args.delay_ms} ms, {args.requests} requests a row")
        print(f"{'destinations':>12} {'p50 ms':>8} {'p95 ms':>8} {'p50/delay':>10}")
        for n in counts:
            for _ in range(3):  # warm-up: connections, imports, caches
                time_ingest(port, tokens[n], n)
            samples = [time_ingest(port, tokens[n], n) for _ in range(args.requests)]
            p50, p95 = statistics.median(samples), percentile(samples, 0.95)
            print(f"{n:>12} {p50 * 1000:>8.1f} {p95 * 1000:>8.1f} {p50 / delay:>10.3f}")
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
