"""Settings read from the environment: a value that cannot work stops the process at start, saying
which setting and why, instead of misbehaving later."""

import os

import pytest

from server.tests.conftest import python


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
    ],
)
def test_a_setting_that_cannot_work_stops_the_process(variable, value, message):
    """Loading the settings with the bad value fails with ImproperlyConfigured naming it."""
    env = {**os.environ, "SECRET_KEY": "settings-test", "DEBUG": "false", variable: value}
    finished = python("-c", "import datapusher.settings", env=env)
    assert finished.returncode == 1
    assert f"django.core.exceptions.ImproperlyConfigured: {message}" in finished.stderr
