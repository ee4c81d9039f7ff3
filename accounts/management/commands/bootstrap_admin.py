from django.core.management.base import BaseCommand

from accounts.services import admin_bootstrap


class Command(BaseCommand):
    help = "On first run, create an admin user with a random password and an API token; print them once."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")

    def handle(self, *args, username: str, **options):
        created = admin_bootstrap(username=username)
        if created is None:
            self.stdout.write(f"Admin user {username!r} already exists; credentials unchanged.")
            return
        password, token = created
        self.stdout.write(
            self.style.SUCCESS("First run: created the admin user. Shown only this once; keep them.")
        )
        self.stdout.write(f"  username:  {username}")
        self.stdout.write(f"  password:  {password}")
        self.stdout.write(f"  API token: {token}")
