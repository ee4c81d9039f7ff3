from django.core.management.base import BaseCommand

from accounts.services import api_token_for_user


class Command(BaseCommand):
    help = "Create the staff user USERNAME if missing and print only its API token key on stdout."

    def add_arguments(self, parser):
        parser.add_argument("username")

    def handle(self, *args, username: str, **options):
        key, created = api_token_for_user(username=username)
        if created:
            self.stderr.write(f"Created staff user {username!r}.")
        self.stdout.write(key)
