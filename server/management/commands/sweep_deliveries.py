from django.conf import settings
from django.core.management.base import BaseCommand

from server.services import deliveries_sweep


class Command(BaseCommand):
    help = "Enqueue pending deliveries that are overdue (lost by a flushed broker or a killed worker)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--overdue-seconds",
            type=float,
            default=settings.DATAPUSHER_SWEEP_OVERDUE_SECONDS,
            help="Default: DATAPUSHER_SWEEP_OVERDUE_SECONDS.",
        )

    def handle(self, *args, overdue_seconds: float, **options):
        enqueued = deliveries_sweep(overdue_seconds=overdue_seconds)
        self.stdout.write(f"Enqueued {enqueued} overdue deliveries.")
