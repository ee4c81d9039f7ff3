"""Unknown paths, server errors and an unavailable database answer in each part's own shape:
the ingest's JSON under /server/, DRF's under /api/, Django's HTML pages elsewhere."""

import pytest
from django.db import OperationalError
from django.test import Client
from knox.auth import TokenAuthentication
from rest_framework.test import APIClient

from datapusher.middleware import DATABASE_RETRY_AFTER_SECONDS

ERROR_URLS = "server.tests.error_urls"


@pytest.fixture
def failing_client() -> Client:
    """A test client that returns the 500 page instead of re-raising the view's exception."""
    return Client(raise_request_exception=False)


@pytest.mark.parametrize("path", ["/server/", "/server/nope", "/server/incoming_data/extra"])
def test_unknown_ingest_path_is_json_404(client, path):
    """A path under /server/ that does not exist answers the ingest's JSON 404."""
    response = client.post(path, b"{}", content_type="application/json")
    assert response.status_code == 404
    assert response.json() == {"success": False, "message": "Not Found"}


@pytest.mark.parametrize("path", ["/api/nope/", "/api/accounts/1/2/3/"])
def test_unknown_api_path_is_drf_json_404(client, path):
    """A path under /api/ that does not exist answers DRF's JSON 404."""
    response = client.get(path)
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}


@pytest.mark.parametrize("path", ["/nope/", "/serverless/", "/apis/"])
def test_unknown_path_elsewhere_is_djangos_html_404(client, path):
    """Outside /server/ and /api/ an unknown path keeps Django's HTML 404 page."""
    response = client.get(path)
    assert response.status_code == 404
    assert response["Content-Type"] == "text/html; charset=utf-8"
    assert b"<h1>Not Found</h1>" in response.content


@pytest.mark.urls(ERROR_URLS)
def test_ingest_server_error_is_json_500(failing_client):
    """An unexpected exception under /server/ answers the ingest's JSON 500."""
    response = failing_client.get("/server/fail")
    assert response.status_code == 500
    assert response.json() == {"success": False, "message": "Server Error"}


@pytest.mark.urls(ERROR_URLS)
def test_api_server_error_is_drf_json_500(failing_client):
    """An unexpected exception in a DRF view under /api/ answers DRF's JSON 500."""
    response = failing_client.get("/api/fail/")
    assert response.status_code == 500
    assert response.json() == {"error": "Server Error (500)"}


@pytest.mark.urls(ERROR_URLS)
def test_server_error_elsewhere_is_djangos_html_500(failing_client):
    """Outside /server/ and /api/ an unexpected exception keeps Django's HTML 500 page."""
    response = failing_client.get("/fail/")
    assert response.status_code == 500
    assert response["Content-Type"] == "text/html; charset=utf-8"
    assert b"<h1>Server Error (500)</h1>" in response.content


@pytest.mark.urls(ERROR_URLS)
@pytest.mark.parametrize(
    ("path", "content_type", "body"),
    [
        (
            "/server/database-locked",
            "application/json",
            b'{"success": false, "message": "Service Unavailable"}',
        ),
        ("/api/database-locked/", "application/json", b'{"detail": "Service Unavailable"}'),
        ("/database-locked/", "text/plain; charset=utf-8", b"Service Unavailable"),
    ],
)
def test_database_locked_is_503_with_retry_after(failing_client, path, content_type, body):
    """SQLite's "database is locked" (an OperationalError) is a 503 with Retry-After, in each part's shape."""
    response = failing_client.get(path)
    assert response.status_code == 503
    assert (response["Content-Type"], response.content) == (content_type, body)
    assert response["Retry-After"] == str(DATABASE_RETRY_AFTER_SECONDS) == "5"


def test_api_viewset_database_error_reaches_the_middleware(monkeypatch):
    """A real API viewset re-raises a database error from authentication; the answer is 503, not 500."""

    def database_gone(self, key):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(TokenAuthentication, "authenticate_credentials", database_gone)
    client = APIClient(raise_request_exception=False)
    client.credentials(HTTP_AUTHORIZATION="Token anything")
    response = client.get("/api/accounts/")
    assert response.status_code == 503
    assert response.json() == {"detail": "Service Unavailable"}
    assert response["Retry-After"] == "5"
