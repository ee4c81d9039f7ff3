from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand
from django.utils import timezone

from server.services.log import events_purge


class Command(BaseCommand):
    help = "Delete events (with their deliveries and attempts) older than the retention period."

    def add_arguments(self, parser):
        parser.add_argument(
            "--older-than-days",
            type=int,
            default=settings.DATAPUSHER_EVENT_RETENTION_DAYS,
            help="Default: DATAPUSHER_EVENT_RETENTION_DAYS.",
        )
        parser.add_argument("--batch-size", type=int, default=1000)

    def handle(self, *args, older_than_days: int, batch_size: int, **options):
        deleted = events_purge(
            older_than=timezone.now() - timedelta(days=older_than_days), batch_size=batch_size
        )
        self.stdout.write(f"Deleted {deleted} events received before {older_than_days} days ago.")
