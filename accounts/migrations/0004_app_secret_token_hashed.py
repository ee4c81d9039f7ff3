"""App secret tokens are kept as their SHA-256 and first 8 characters: existing tokens are hashed in
place (they keep working at the ingest) and the clear-text column is dropped."""

from django.db import migrations, models

import accounts.tokens


def hash_tokens(apps, schema_editor):
    account_model = apps.get_model("accounts", "Account")
    rows = list(account_model.objects.only("pk", "app_secret_token"))
    for account in rows:
        account.app_secret_token_hash = accounts.tokens.app_secret_token_hash(account.app_secret_token)
        account.app_secret_token_prefix = account.app_secret_token[: accounts.tokens.APP_SECRET_TOKEN_PREFIX_LENGTH]
    account_model.objects.bulk_update(rows, ["app_secret_token_hash", "app_secret_token_prefix"], batch_size=500)


class Migration(migrations.Migration):
    dependencies = [("accounts", "0003_api_tokens_hashed")]

    operations = [
        migrations.AddField(
            model_name="account",
            name="app_secret_token_hash",
            field=models.CharField(editable=False, max_length=64, null=True),
        ),
        migrations.AddField(
            model_name="account",
            name="app_secret_token_prefix",
            field=models.CharField(blank=True, editable=False, max_length=8, default=""),
            preserve_default=False,
        ),
        migrations.RunPython(hash_tokens, migrations.RunPython.noop),
        migrations.RemoveField(model_name="account", name="app_secret_token"),
        migrations.AlterField(
            model_name="account",
            name="app_secret_token_hash",
            field=models.CharField(
                default=accounts.tokens.unknown_app_secret_token_hash, editable=False, max_length=64, unique=True
            ),
        ),
    ]
