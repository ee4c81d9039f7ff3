"""Settings read from the environment: a value that cannot work stops the process at start, saying
which setting and why, instead of misbehaving later."""

import os
import re
import socket
from pathlib import Path

import pytest

from server.tests.conftest import production_env, python


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        (
            "DATAPUSHER_ACCOUNT_CONCURRENCY",
            "0",
            "DATAPUSHER_ACCOUNT_CONCURRENCY must be at least 1 and at most",
        ),
        (
            "DATAPUSHER_ACCOUNT_CONCURRENCY",
            "65",
            "DATAPUSHER_ACCOUNT_CONCURRENCY must be at least 1 and at most",
        ),
        ("DATAPUSHER_MAX_QUERY_BYTES", "0", "DATAPUSHER_MAX_QUERY_BYTES must be greater than 0."),
        ("DATAPUSHER_PUBLISH_TIMEOUT", "0", "DATAPUSHER_PUBLISH_TIMEOUT must be greater than 0."),
        ("DATAPUSHER_DISPATCH_INTERVAL", "-1", "DATAPUSHER_DISPATCH_INTERVAL must be greater than 0."),
        ("DATAPUSHER_DISPATCH_BATCH", "0", "DATAPUSHER_DISPATCH_BATCH must be greater than 0."),
        ("DATAPUSHER_DELIVERY_MODE", "later", "DATAPUSHER_DELIVERY_MODE must be 'sync' or 'queue'."),
        ("DATAPUSHER_ALLOWED_NETWORKS", "10.0.0.0/99", "DATAPUSHER_ALLOWED_NETWORKS:"),
        ("DATAPUSHER_INGEST_RATE_LIMIT", "50/fortnight", "DATAPUSHER_INGEST_RATE_LIMIT: Enter a rate"),
        ("DATAPUSHER_LOG_FORMAT", "xml", "DATAPUSHER_LOG_FORMAT must be 'json' or 'text'."),
        ("DATAPUSHER_ALERT_AFTER_FAILURES", "0", "DATAPUSHER_ALERT_AFTER_FAILURES must be at least 1."),
    ],
)
def test_a_setting_that_cannot_work_stops_the_process(variable, value, message):
    """Loading the settings with the bad value fails with ImproperlyConfigured naming it."""
    env = {**os.environ, "SECRET_KEY": "settings-test", "DEBUG": "false", variable: value}
    finished = python("-c", "import datapusher.settings", env=env)
    assert finished.returncode == 1
    assert f"django.core.exceptions.ImproperlyConfigured: {message}" in finished.stderr


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads a process's environment in /proc")
def test_make_serve_runs_its_workers_with_the_allocator_settings(services, tmp_path):
    """`make serve` gives gunicorn glibc's settings that return a large body's memory (and caps the
    arenas), unless the environment sets them already."""
    env = {
        key: value
        for key, value in production_env(database_url=f"sqlite:///{tmp_path / 'db.sqlite3'}").items()
        if not key.startswith("MALLOC_")
    }
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    argv = ["make", "--no-print-directory", "serve", f"BIND=127.0.0.1:{port}", "WEB_CONCURRENCY=1"]
    web = services(argv, env, lambda log: "Booting worker with pid" in log)
    worker = re.search(r"Booting worker with pid: (\d+)", web.log.read_text())[1]
    environ = Path(f"/proc/{worker}/environ").read_bytes().split(b"\0")
    assert {b"MALLOC_ARENA_MAX=2", b"MALLOC_MMAP_THRESHOLD_=131072"} <= set(environ)


@pytest.mark.parametrize(("value", "expected"), [(None, "True"), ("false", "False")])
def test_conn_health_checks_default_on_and_can_be_turned_off(value, expected):
    """CONN_HEALTH_CHECKS is on unless the environment turns it off."""
    env = {key: val for key, val in os.environ.items() if key != "CONN_HEALTH_CHECKS"}
    env.update({"SECRET_KEY": "settings-test", "DEBUG": "false"})
    if value is not None:
        env["CONN_HEALTH_CHECKS"] = value
    code = "import datapusher.settings as s; print(s.DATABASES['default']['CONN_HEALTH_CHECKS'])"
    finished = python("-c", code, env=env)
    assert (finished.returncode, finished.stdout.strip()) == (0, expected)
