from django.core.management.base import BaseCommand, CommandError

from destinations.services import destination_credentials_reencrypt


class Command(BaseCommand):
    help = (
        "Encrypt destinations' stored credentials again with the first key of DATAPUSHER_ENCRYPTION_KEYS "
        "(after a new key was put first), so that the older keys can be removed."
    )

    def handle(self, *args, **options):
        rewritten, undecryptable = destination_credentials_reencrypt()
        self.stdout.write(f"Encrypted the credentials of {rewritten} destinations with the first key.")
        if undecryptable:
            ids = ", ".join(str(pk) for pk in undecryptable)
            raise CommandError(f"No key decrypts the credentials of destinations {ids}; left as they are.")
