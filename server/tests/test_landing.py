"""`/`: the landing page naming the product and linking the admin, the API's docs and the docs."""

import os

import pytest
from django.test.html import parse_html

from server.tests.conftest import python

pytestmark = pytest.mark.django_db


def links(page: bytes) -> dict[str, str]:
    """Each link's element id and href."""
    found = {}

    def walk(element):
        for child in getattr(element, "children", []):
            if getattr(child, "name", None) == "a":
                attributes = dict(child.attributes)
                found[attributes.get("id")] = attributes["href"]
            walk(child)

    walk(parse_html(page.decode()))
    return found


def test_the_landing_page_links_the_admin_and_the_api_docs(client, django_assert_num_queries):
    """Anyone gets `/`, naming the product and linking the admin, Swagger UI and the schema, without
    touching the database."""
    with django_assert_num_queries(0):
        response = client.get("/")
    assert (response.status_code, response["Content-Type"]) == (200, "text/html; charset=utf-8")
    assert b'<h1 id="product">Data Pusher</h1>' in response.content
    assert links(response.content) == {
        "link-admin": "/admin/",
        "link-swagger": "/api/docs/",
        "link-schema": "/api/schema/",
    }


def test_the_links_lead_somewhere(admin_client):
    """Each link of the landing page answers 200 to a signed-in staff user."""
    for href in links(admin_client.get("/").content).values():
        assert (href, admin_client.get(href).status_code) == (href, 200)


def test_docs_are_linked_where_the_repository_is_browsed(client, settings):
    """With DATAPUSHER_DOCS_URL, the README's sections and docs/ are linked there."""
    settings.DATAPUSHER_DOCS_URL = "https://git.example.com/datapusher/blob/main/"
    found = links(client.get("/").content)
    assert {key: value for key, value in found.items() if key.startswith("doc-")} == {
        "doc-readme": "https://git.example.com/datapusher/blob/main/README.md",
        "doc-readme-configuration": "https://git.example.com/datapusher/blob/main/README.md#configuration",
        "doc-api": "https://git.example.com/datapusher/blob/main/docs/api.md",
        "doc-delivery": "https://git.example.com/datapusher/blob/main/docs/delivery.md",
        "doc-deployment": "https://git.example.com/datapusher/blob/main/docs/deployment.md",
        "doc-admin": "https://git.example.com/datapusher/blob/main/docs/admin.md",
    }


def test_without_a_docs_url_the_docs_are_named(client, settings):
    """Without DATAPUSHER_DOCS_URL, the docs are named by their path in the repository, not linked."""
    settings.DATAPUSHER_DOCS_URL = ""
    page = client.get("/").content.decode()
    assert (
        parse_html(page).count(
            parse_html(
                '<span id="doc-api">The API contract, every error case: '
                "<code>docs/api.md</code> in the repository</span>"
            )
        )
        == 1
    )
    assert not [key for key in links(page.encode()) if key.startswith("doc-")]


def test_the_landing_page_answers_only_get_and_head(client):
    """POST / is 405; HEAD / is 200."""
    assert (client.post("/").status_code, client.head("/").status_code) == (405, 200)


def test_a_docs_url_that_is_not_http_stops_the_process():
    """DATAPUSHER_DOCS_URL must be an http(s) URL: anything else fails at start, naming it."""
    env = {
        **os.environ,
        "SECRET_KEY": "settings-test",
        "DEBUG": "false",
        "DATAPUSHER_DOCS_URL": "javascript:alert(1)",
    }
    finished = python("-c", "import datapusher.settings", env=env)
    assert finished.returncode == 1
    assert "ImproperlyConfigured: DATAPUSHER_DOCS_URL must be an http(s) URL." in finished.stderr
