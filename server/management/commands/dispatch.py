import os
import signal
import socket
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, close_old_connections

from server import broker
from server.services.dispatch import deliveries_dispatch, dispatcher_beat, dispatcher_forget


class Command(BaseCommand):
    help = (
        "Publish due pending deliveries to the broker, every DATAPUSHER_DISPATCH_INTERVAL seconds: "
        "retries when due, what the ingest could not publish, what the broker lost, what a killed "
        "worker left. Safe to run in more than one process."
    )

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="One pass, then exit (for cron or a check).")

    def handle(self, *args, once: bool, **options):
        if not broker.configured():
            raise CommandError("The dispatcher publishes to a broker: set CELERY_BROKER_URL.")
        stopping = []
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stopping.append(True))
        batch, interval = settings.DATAPUSHER_DISPATCH_BATCH, settings.DATAPUSHER_DISPATCH_INTERVAL
        if not once:
            self.stdout.write(f"Dispatching due deliveries every {interval:g}s, {batch} at a time.")
            self.stdout.flush()
        # Its heartbeat (for /readyz) after each round that reached the database; removed on the way out.
        name = f"{socket.gethostname()}:{os.getpid()}"
        try:
            self._run(name=name, once=once, stopping=stopping, batch=batch, interval=interval)
        finally:
            try:
                dispatcher_forget(name=name)
            except DatabaseError as err:
                self.stderr.write(f"could not remove this dispatcher's heartbeat: {err}")

    def _run(self, *, name: str, once: bool, stopping: list, batch: int, interval: float) -> None:
        while True:
            try:
                published = deliveries_dispatch(limit=batch)
                dispatcher_beat(name=name)
            except DatabaseError as err:
                self.stderr.write(f"database unavailable, trying again: {err}")
                close_old_connections()
                published = 0
            if once:
                self.stdout.write(f"Published {published} deliveries.")
                return
            if stopping:
                return
            if published < batch:  # caught up: wait for more to fall due
                time.sleep(interval)
