"""Queued delivery end to end: a real Celery worker process, a real broker, PostgreSQL, a real receiver.

Skipped without PostgreSQL as the database or without the broker; CI runs them
(DATAPUSHER_REQUIRE_SERVICES=1 turns a missing broker into a failure).
"""

import io
import time

import pytest
import redis
from django.core.management import call_command
from standardwebhooks.webhooks import Webhook

from accounts.tests.factories import AccountFactory
from destinations.tests.factories import DestinationFactory
from server.models import Delivery
from server.tests.conftest import wait_until
from server.tests.helpers import ingest


def statuses() -> list[str]:
    return list(Delivery.objects.order_by("id").values_list("status", flat=True))


def answer(handler, status: int) -> None:
    handler.send_response(status)
    handler.send_header("Content-Length", "0")
    handler.end_headers()


@pytest.mark.parametrize("broker_url", ["redis", "rabbitmq"], indirect=True)
def test_queued_delivery_succeeds(client, worker, receiver):
    """202 with pending deliveries at once; the worker delivers, signed, and logs success."""
    worker()
    account = AccountFactory()
    destinations = [DestinationFactory(account=account, url=f"{receiver.url}/{i}") for i in range(3)]
    response = ingest(client, account)
    assert response.status_code == 202
    assert [d["status"] for d in response.json()["deliveries"]] == ["pending"] * 3
    wait_until(lambda: statuses() == ["succeeded"] * 3, 20, f"deliveries: {statuses()}")
    assert sorted(r.path for r in receiver.requests) == ["/0", "/1", "/2"]
    for received in receiver.requests:
        destination = next(d for d in destinations if d.url.endswith(received.path))
        assert received.body == b'{"a": 1}'
        Webhook(destination.signing_secret).verify(received.body, received.headers)


def test_failure_then_success_is_retried_to_success(client, worker, receiver):
    """A receiver answering 500 then 200: the second attempt, a second later, succeeds (same webhook-id)."""
    answers = iter([500, 200])
    receiver.respond = lambda handler: answer(handler, next(answers))
    worker()
    account = AccountFactory()
    DestinationFactory(account=account, url=receiver.url)
    ingest(client, account)
    wait_until(lambda: statuses() == ["succeeded"], 20, f"deliveries: {statuses()}")
    delivery = Delivery.objects.get()
    assert delivery.attempt_count == 2
    assert list(delivery.attempts.values_list("status_code", flat=True)) == [500, 200]
    first, second = receiver.requests
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == str(delivery.delivery_id)
    assert second.headers["webhook-timestamp"] >= first.headers["webhook-timestamp"]


def test_failing_destination_ends_failed_after_the_schedule(client, worker, receiver):
    """Always 503: 1 + 3 attempts (schedule 1,1,1), then failed for good."""
    receiver.respond = lambda handler: answer(handler, 503)
    worker()
    account = AccountFactory()
    DestinationFactory(account=account, url=receiver.url)
    ingest(client, account)
    wait_until(lambda: statuses() == ["failed"], 30, f"deliveries: {statuses()}")
    assert Delivery.objects.get().attempt_count == 4
    assert len(receiver.requests) == 4


def test_worker_killed_mid_delivery_loses_nothing(client, worker, receiver):
    """SIGKILL while a delivery is in flight; a new worker and the sweeper finish it (at least once)."""
    first_seen = []

    def slow_then_ok(handler):
        if not first_seen:
            first_seen.append(time.monotonic())
            time.sleep(3)
        answer(handler, 200)

    receiver.respond = slow_then_ok
    doomed = worker()
    account = AccountFactory()
    DestinationFactory(account=account, url=receiver.url)
    assert ingest(client, account).status_code == 202
    wait_until(lambda: bool(first_seen), 20, f"the delivery never started:\n{doomed.output()}")
    doomed.kill()
    assert statuses() == ["pending"]
    worker()

    def swept_and_delivered() -> bool:
        call_command("sweep_deliveries", "--overdue-seconds", "0", stdout=io.StringIO())
        return statuses() == ["succeeded"]

    wait_until(swept_and_delivered, 40, f"deliveries: {statuses()}")
    delivery = Delivery.objects.get()
    assert len(receiver.requests) == 2
    assert {r.headers["webhook-id"] for r in receiver.requests} == {str(delivery.delivery_id)}


def test_broker_flush_is_recovered_by_the_sweeper(client, worker, receiver, queue_mode):
    """Messages lost from the broker: the database still says pending, and the sweeper re-enqueues."""
    account = AccountFactory()
    DestinationFactory.create_batch(2, account=account, url=receiver.url)
    assert ingest(client, account).status_code == 202
    redis.Redis.from_url(queue_mode).flushdb()
    worker()
    time.sleep(2)
    assert statuses() == ["pending", "pending"]
    assert receiver.requests == []
    call_command("sweep_deliveries", "--overdue-seconds", "0", stdout=io.StringIO())
    wait_until(lambda: statuses() == ["succeeded", "succeeded"], 20, f"deliveries: {statuses()}")
    assert len(receiver.requests) == 2
