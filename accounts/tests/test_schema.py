"""The OpenAPI schema names, for each operation, every status it can answer."""

import pytest

from accounts.tests.factories import AccountFactory
from destinations.models import Destination

pytestmark = pytest.mark.django_db
PUBLIC = {("/api/auth/token/", "post")}
# What Swagger UI fills in for a property with no example, by type and format.
SWAGGER_DEFAULTS = {"uuid": "3fa85f64-5717-4562-b3fc-2c963f66afa6", "uri": "https://example.com/"}


@pytest.fixture
def schema(api_client) -> dict:
    return api_client.get("/api/schema/", {"format": "json"}).json()


@pytest.mark.parametrize(
    ("path", "method", "codes"),
    [
        ("/api/accounts/", "get", ["200", "400", "401", "404", "503"]),
        ("/api/accounts/", "post", ["201", "400", "401", "403", "503"]),
        ("/api/accounts/{account_id}/", "get", ["200", "401", "404", "503"]),
        ("/api/accounts/{account_id}/", "patch", ["200", "400", "401", "403", "404", "503"]),
        ("/api/accounts/{account_id}/", "delete", ["204", "401", "403", "404", "503"]),
        ("/api/accounts/{account_id}/rotate-token/", "post", ["200", "401", "403", "404", "503"]),
        ("/api/accounts/{account_id}/members/", "post", ["201", "400", "401", "403", "404", "503"]),
        ("/api/destinations/{id}/secret/", "get", ["200", "401", "403", "404", "503"]),
        ("/api/events/{event_id}/redeliver/", "post", ["200", "202", "400", "401", "404", "503"]),
        ("/api/deliveries/{delivery_id}/retry/", "post", ["200", "202", "401", "404", "409", "503"]),
        ("/api/auth/logout/", "post", ["204", "401", "503"]),
        ("/api/auth/token/", "post", ["200", "400", "429", "503"]),
        ("/api/auth/me/", "get", ["200", "401", "503"]),
    ],
)
def test_each_operation_documents_its_errors(schema, path, method, codes):
    """Validation (400) where there is a body or a filter, 401 unless public, 403 where a member's role
    is not enough, 404 on an object's URL or a page past the last, 503 always — plus each operation's own."""
    assert sorted(schema["paths"][path][method]["responses"]) == codes


def test_the_schema_names_the_token_scheme_and_the_roles(schema):
    """Token authentication is a security scheme, and the description says who may do what."""
    schemes = schema["components"]["securitySchemes"]
    assert any(
        scheme.get("scheme") == "bearer" or scheme.get("in") == "header" for scheme in schemes.values()
    )
    assert "`member` reads them" in schema["info"]["description"]


def operations(schema: dict):
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            yield path, method, operation


def test_every_api_operation_documents_its_errors_with_a_body(schema):
    """Every /api/ operation: 503, 401 unless public, 404 on an object's URL, 400 where it takes a
    body; every answer has a description, and every error a JSON schema."""
    for path, method, operation in operations(schema):
        if not path.startswith("/api/"):
            continue
        codes = set(operation["responses"])
        expected = {"503"} | ({"401"} if (path, method) not in PUBLIC else set())
        expected |= {"404"} if "{" in path else set()
        expected |= {"400"} if "requestBody" in operation else set()
        assert expected <= codes, (method, path, sorted(codes))
        for code, response in operation["responses"].items():
            assert response["description"] or code.startswith("2"), (method, path, code)
            if code >= "400":
                assert response["content"]["application/json"]["schema"], (method, path, code)


def test_destination_headers_are_an_object_of_strings_with_an_example(schema):
    """headers: {"type": "object", "additionalProperties": {"type": "string"}}, with an example."""
    headers = schema["components"]["schemas"]["DestinationRequest"]["properties"]["headers"]
    assert headers["type"] == "object"
    assert headers["additionalProperties"] == {"type": "string"}
    assert headers["example"] == {"Authorization": "Bearer your-api-key", "X-Source": "datapusher"}


def swagger_example(schema: dict, name: str) -> dict:
    """The request body Swagger UI's "Try it out" fills in for the component `name`."""
    example = {}
    for field, prop in schema["components"]["schemas"][name]["properties"].items():
        ref = prop.get("$ref") or prop.get("allOf", [{}])[0].get("$ref")  # allOf: a described $ref
        if ref:
            prop = schema["components"]["schemas"][ref.rsplit("/", 1)[1]]
        if "example" in prop:
            example[field] = prop["example"]
        elif "enum" in prop:
            example[field] = prop["enum"][0]
        elif prop.get("type") == "boolean":
            example[field] = True
        else:
            example[field] = SWAGGER_DEFAULTS[prop["format"]]
    return example


def test_the_schemas_own_destination_example_is_accepted(schema, api_client):
    """POST /api/destinations/ with the body Swagger UI builds from the schema (an account of ours): 201."""
    account = AccountFactory()
    body = swagger_example(schema, "DestinationRequest") | {"account": str(account.account_id)}
    response = api_client.post("/api/destinations/", body, format="json")
    assert response.status_code == 201
    destination = Destination.objects.get()
    assert (
        destination.url,
        destination.http_method,
        destination.headers,
        destination.enabled,
        destination.auth,
        destination.rate_limit,
        destination.max_in_flight,
    ) == (
        "https://example.com/",
        "GET",
        {"Authorization": "Bearer your-api-key", "X-Source": "datapusher"},
        True,
        {"type": "none"},
        None,
        None,
    )


@pytest.mark.parametrize(
    "path",
    ["/api/accounts/", "/api/destinations/", "/api/events/", "/api/deliveries/"],
)
def test_a_page_past_the_last_is_the_documented_404(api_client, path):
    """The 404 that every paginated list documents: a page past the last."""
    response = api_client.get(path, {"page": 9})
    assert (response.status_code, response.json()) == (404, {"detail": "Invalid page."})


@pytest.mark.parametrize(
    ("path", "query", "field"),
    [
        ("/api/accounts/", {"created_after": "yesterday"}, "created_after"),
        ("/api/destinations/", {"account": "not-a-uuid"}, "account"),
        ("/api/events/", {"received_after": "yesterday"}, "received_after"),
        ("/api/deliveries/", {"status": "lost"}, "status"),
    ],
)
def test_an_invalid_filter_is_the_documented_400(api_client, path, query, field):
    """The 400 that every filtered list documents: field name to its messages."""
    response = api_client.get(path, query)
    assert response.status_code == 400
    assert list(response.json()) == [field]
    assert all(isinstance(message, str) for message in response.json()[field])
