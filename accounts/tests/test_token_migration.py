"""API tokens made before tokens were hashed keep working after the migration; none stays in clear."""

import importlib

import pytest
from django.apps import apps
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from knox.models import AuthToken
from rest_framework.test import APIClient

from accounts.models import Account

pytestmark = pytest.mark.django_db(transaction=True)

migration = importlib.import_module("accounts.migrations.0003_api_tokens_hashed")
OLD_KEY = "9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b"  # DRF's format: 40 hex characters


def test_an_old_clear_text_token_moves_to_a_hash_and_still_signs_in(django_user_model):
    """A row of DRF's token table becomes a knox token that never expires; the old table is dropped."""
    user = django_user_model.objects.create_user(username="ci-bot", is_staff=True)
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY, user_id integer, created timestamp)"
        )
        cursor.execute(
            "INSERT INTO authtoken_token VALUES (%s, %s, %s)", [OLD_KEY, user.pk, "2026-01-02 03:04:05"]
        )
    with connection.schema_editor() as editor:
        migration.move_tokens(apps, editor)
    assert "authtoken_token" not in connection.introspection.table_names()
    [token] = AuthToken.objects.all()
    assert (token.user_id, token.expiry, token.token_key) == (user.pk, None, OLD_KEY[:15])
    assert OLD_KEY not in token.digest
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {OLD_KEY}")
    assert client.get("/api/accounts/").status_code == 200


def test_without_the_old_table_the_migration_does_nothing():
    """A database made after tokens were hashed has no old table: nothing to move, no error."""
    with connection.schema_editor() as editor:
        migration.move_tokens(apps, editor)
    assert AuthToken.objects.count() == 0


def test_app_secret_tokens_in_clear_are_hashed_in_place_and_keep_working(client):
    """Migrating an account made with a clear-text token keeps that token working at the ingest,
    shows its first 8 characters, and leaves no column holding it."""
    executor = MigrationExecutor(connection)
    before = [("accounts", "0003_api_tokens_hashed")]
    executor.migrate(before)
    old_apps = executor.loader.project_state(before).apps
    token = "old-token-made-before-hashing-0123456789abc"
    old_apps.get_model("accounts", "Account").objects.create(
        email="old@example.com", account_name="Old", app_secret_token=token
    )
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())  # to the latest state, as later tests expect
    account = Account.objects.get(email="old@example.com")
    assert account.app_secret_token_prefix == token[:8]
    columns = [
        column.name
        for column in connection.introspection.get_table_description(connection.cursor(), "accounts_account")
    ]
    assert "app_secret_token" not in columns
    response = client.post(
        "/server/incoming_data", {}, content_type="application/json", headers={"CL-X-TOKEN": token}
    )
    assert response.status_code == 200
