"""The API's errors in its one JSON shape where Django or DRF would answer otherwise: a path
under /api/v1/ that names no endpoint, and query strings that are not what the schema
says (both found by tests/fuzz/test_api_schema.py)."""
import pytest
from django.test import Client

from tests.api_helpers import key_client

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("method, path", [
    ("get", "/api/v1/nothing-here"),
    ("get", "/api/v1/deployments/null/limits"),  # a non-numeric id matches no route
    ("get", "/api/v1/admin/quotas/1%0A2"),  # a newline in the path
    ("post", "/api/v1/keys/abc/revoke"),  # an API key needs no CSRF token, here neither
    ("delete", "/api/v1/models/1.5"),
])
def test_a_path_that_names_no_endpoint_is_a_json_404(acme, method, path):
    response = getattr(key_client(acme), method)(path)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "not_found"
    assert "/api/v1/docs/" in response.json()["error"]["message"]


def test_a_missing_trailing_slash_still_redirects():
    response = Client().get("/api/v1/docs?x=1")
    assert (response.status_code, response["Location"]) == (301, "/api/v1/docs/?x=1")


@pytest.mark.parametrize("query, field", [
    ("/api/v1/usage?offset=false", "offset"),
    ("/api/v1/usage?limit=0", "limit"),
    ("/api/v1/usage?limit=-5", "limit"),
    ("/api/v1/usage?limit=1001", "limit"),
    ("/api/v1/usage?limit=", "limit"),
    ("/api/v1/deployments?history=", "history"),
    ("/api/v1/usage/timeseries?minutes=", "minutes"),
])
def test_a_query_value_that_is_not_what_the_schema_says_is_refused(acme, query, field):
    response = key_client(acme).get(query)
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith(f"{field}: ")


def test_limit_and_offset_page_as_before(acme):
    client = key_client(acme)
    assert client.get("/api/v1/usage?limit=1000&offset=0").status_code == 200
    assert client.get("/api/v1/deployments?history=true").status_code == 200


def test_a_body_in_a_content_type_the_endpoint_does_not_read_is_a_documented_415(acme):
    response = key_client(acme).post("/api/v1/keys", "label=x", content_type="text/plain")
    assert response.status_code == 415
    assert response.json()["error"]["message"] == 'Unsupported media type "text/plain" in request.'
    schema = key_client(acme).get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    assert "415" in schema["paths"]["/api/v1/keys"]["post"]["responses"]
    assert "415" not in schema["paths"]["/api/v1/keys"]["get"]["responses"]  # it reads no body
