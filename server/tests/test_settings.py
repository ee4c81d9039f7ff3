"""Settings read from the environment: a value that cannot work stops the process at start, saying
which setting and why, instead of misbehaving later."""

import os
import re
import secrets
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from server.tests.conftest import ROOT, production_env, python
from server.tests.helpers import fenced_blocks, http_exchange


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
        ("SECURE_PROXY_SSL_HEADER", "HTTP_X_FORWARDED_PROTO", "SECURE_PROXY_SSL_HEADER must be a header"),
        ("DATAPUSHER_LOG_FORMAT", "xml", "DATAPUSHER_LOG_FORMAT must be 'json' or 'text'."),
        ("DATAPUSHER_ALERT_AFTER_FAILURES", "0", "DATAPUSHER_ALERT_AFTER_FAILURES must be at least 1."),
        (
            "DATAPUSHER_ENCRYPTION_KEYS",
            "not-a-key",
            "DATAPUSHER_ENCRYPTION_KEYS: each key must be 32 url-safe",
        ),
        (
            "REDIS_URL",
            "unix:///run/redis.sock",
            "REDIS_URL must be a redis://, rediss:// or redis+unix:// URL",
        ),
        ("DATAPUSHER_ADMIN_ACTION_MAX_DELIVERIES", "0", "DATAPUSHER_ADMIN_SEND_CONCURRENCY and"),
        ("DATAPUSHER_RETRY_AFTER_MAX", "0.5", "DATAPUSHER_RETRY_AFTER_MAX must be at least 1 (second)."),
        ("DATAPUSHER_BREAKER_FAILURES", "-1", "DATAPUSHER_BREAKER_FAILURES must be 0 (off) or more."),
        ("DATAPUSHER_BREAKER_COOLDOWN", "0", "DATAPUSHER_BREAKER_COOLDOWN must be above 0 and at most"),
        ("DATAPUSHER_BREAKER_COOLDOWN", "7200", "DATAPUSHER_BREAKER_COOLDOWN must be above 0 and at most"),
        ("DATAPUSHER_DISABLE_AFTER", "0", "DATAPUSHER_BREAKER_COOLDOWN must be above 0 and at most"),
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


def production_settings_documented() -> dict[str, str]:
    """The variables of docs/deployment.md's production block (```dotenv), with a real SECRET_KEY."""
    blocks = fenced_blocks(ROOT / "docs" / "deployment.md")
    [block] = [block for block in blocks if block.language == "dotenv"]
    assignments = (line.split("#", 1)[0].strip() for line in block.code.splitlines())
    documented = dict(assignment.split("=", 1) for assignment in assignments if assignment)
    assert {"SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS", "SESSION_COOKIE_SECURE"} <= set(documented)
    return {**documented, "SECRET_KEY": secrets.token_urlsafe(50)}


def test_check_deploy_is_clean_with_the_documented_production_settings():
    """`manage.py check --deploy` with docs/deployment.md's production settings reports no issue."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("SECURE_")}
    env.update(production_settings_documented(), DEBUG="false", DJANGO_SETTINGS_MODULE="datapusher.settings")
    finished = python("manage.py", "check", "--deploy", "--fail-level", "WARNING", env=env)
    clean = "System check identified no issues (0 silenced)."
    assert (finished.returncode, finished.stdout.strip()) == (0, clean)


def test_check_deploy_warns_about_https_by_default():
    """Without the HTTPS settings, check --deploy names each one (they are off by default)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("SECURE_")}
    env.update(SECRET_KEY=secrets.token_urlsafe(50), DEBUG="false")
    env["DJANGO_SETTINGS_MODULE"] = "datapusher.settings"
    finished = python("manage.py", "check", "--deploy", env=env)
    warned = set(re.findall(r"\(security\.(W\d+)\)", finished.stderr))
    assert warned == {"W004", "W008", "W012", "W016"}


@pytest.mark.parametrize(
    ("value", "read"),
    [
        ("HTTP_X_FORWARDED_PROTO,https", "('HTTP_X_FORWARDED_PROTO', 'https')"),
        ("", "None"),
    ],
)
def test_the_proxy_ssl_header_is_read_from_the_environment(value, read):
    """SECURE_PROXY_SSL_HEADER is a header and its HTTPS value, or none when empty."""
    env = {**os.environ, "SECRET_KEY": "settings-test", "DEBUG": "false", "SECURE_PROXY_SSL_HEADER": value}
    finished = python("-c", "import datapusher.settings as s; print(s.SECURE_PROXY_SSL_HEADER)", env=env)
    assert (finished.returncode, finished.stdout.strip()) == (0, read)


def test_the_documented_https_settings_redirect_http_and_trust_the_proxy(gunicorn, tmp_path):
    """With docs/deployment.md's HTTPS settings, a plain HTTP request is sent to HTTPS (301); one the
    proxy marks `X-Forwarded-Proto: https` is served, with HSTS."""
    documented = production_settings_documented()
    https = {key: value for key, value in documented.items() if key.startswith("SECURE_")}
    host = documented["ALLOWED_HOSTS"]
    server = gunicorn(database_url=f"sqlite:///{tmp_path / 'db.sqlite3'}", ALLOWED_HOSTS=host, **https)
    status, headers, _ = http_exchange(server.url, "GET", "/api/auth/me/", headers={"Host": host})
    assert (status, headers["Location"]) == (301, f"https://{host}/api/auth/me/")
    proxied = {"Host": host, "X-Forwarded-Proto": "https"}
    status, headers, _ = http_exchange(server.url, "GET", "/api/auth/me/", headers=proxied)
    hsts = "max-age=31536000; includeSubDomains; preload"
    assert (status, headers["Strict-Transport-Security"]) == (401, hsts)


def make_dotenv(directory: Path) -> str:
    """Run `make dotenv` (what `make run` does first) in `directory`; returns the .env it leaves."""
    argv = ["make", "--no-print-directory", "-s", "-C", str(directory), "-f", str(ROOT / "Makefile")]
    finished = subprocess.run(  # noqa: S603 (our own command line)
        [*argv, "dotenv", f"PY={sys.executable}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr
    return (directory / ".env").read_text()


ENCRYPTION_KEY_LINE = r"DATAPUSHER_ENCRYPTION_KEYS=[\w-]{43}=\n"


def test_make_run_writes_a_secret_key_and_loopback_networks_once(tmp_path):
    """A fresh checkout gets a SECRET_KEY, the loopback networks and an encryption key in .env; a
    second run keeps them."""
    first = make_dotenv(tmp_path)
    assert re.fullmatch(
        r"SECRET_KEY=[\w-]{60,}\nDATAPUSHER_ALLOWED_NETWORKS=127\.0\.0\.0/8,::1/128\n" + ENCRYPTION_KEY_LINE,
        first,
    )
    assert make_dotenv(tmp_path) == first


@pytest.mark.parametrize("existing", ["SECRET_KEY=kept", "SECRET_KEY=kept\n"])
def test_make_run_adds_the_networks_to_an_older_env_file(tmp_path, existing):
    """A .env from before (with or without a final newline) gets the networks line, its key kept."""
    (tmp_path / ".env").write_text(existing)
    assert re.fullmatch(
        r"SECRET_KEY=kept\nDATAPUSHER_ALLOWED_NETWORKS=127\.0\.0\.0/8,::1/128\n" + ENCRYPTION_KEY_LINE,
        make_dotenv(tmp_path),
    )


def test_make_run_leaves_networks_already_set_in_env_alone(tmp_path):
    """A .env that sets DATAPUSHER_ALLOWED_NETWORKS and DATAPUSHER_ENCRYPTION_KEYS itself (even
    empty) is not changed."""
    (tmp_path / ".env").write_text(
        "SECRET_KEY=kept\nDATAPUSHER_ALLOWED_NETWORKS=\nDATAPUSHER_ENCRYPTION_KEYS=\n"
    )
    assert (
        make_dotenv(tmp_path)
        == "SECRET_KEY=kept\nDATAPUSHER_ALLOWED_NETWORKS=\nDATAPUSHER_ENCRYPTION_KEYS=\n"
    )
