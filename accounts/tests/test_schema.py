"""The OpenAPI schema names, for each operation, every status it can answer."""

import pytest

pytestmark = pytest.mark.django_db


@pytest.fixture
def schema(api_client) -> dict:
    return api_client.get("/api/schema/", {"format": "json"}).json()


@pytest.mark.parametrize(
    ("path", "method", "codes"),
    [
        ("/api/accounts/", "get", ["200", "401", "503"]),
        ("/api/accounts/", "post", ["201", "400", "401", "403", "503"]),
        ("/api/accounts/{account_id}/", "get", ["200", "401", "404", "503"]),
        ("/api/accounts/{account_id}/", "patch", ["200", "400", "401", "403", "404", "503"]),
        ("/api/accounts/{account_id}/", "delete", ["204", "401", "403", "404", "503"]),
        ("/api/accounts/{account_id}/rotate-token/", "post", ["200", "401", "403", "404", "503"]),
        ("/api/accounts/{account_id}/members/", "post", ["201", "400", "401", "403", "404", "503"]),
        ("/api/destinations/{id}/secret/", "get", ["200", "401", "403", "404", "503"]),
        ("/api/events/{event_id}/redeliver/", "post", ["200", "202", "401", "404", "503"]),
        ("/api/auth/token/", "post", ["200", "400", "429", "503"]),
        ("/api/auth/me/", "get", ["200", "401", "503"]),
    ],
)
def test_each_operation_documents_its_errors(schema, path, method, codes):
    """Validation (400) where there is a body, 401 unless public, 403 where a member's role is not
    enough, 404 on an object's URL, 503 always — plus each operation's own."""
    assert sorted(schema["paths"][path][method]["responses"]) == codes


def test_the_schema_names_the_token_scheme_and_the_roles(schema):
    """Token authentication is a security scheme, and the description says who may do what."""
    schemes = schema["components"]["securitySchemes"]
    assert any(
        scheme.get("scheme") == "bearer" or scheme.get("in") == "header" for scheme in schemes.values()
    )
    assert "`member` reads them" in schema["info"]["description"]
