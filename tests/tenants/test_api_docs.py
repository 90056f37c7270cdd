"""The OpenAPI schema and the Swagger UI, served by the platform itself."""
import pytest

from tests.api_helpers import session_client

pytestmark = pytest.mark.django_db

PATHS = {
    "/api/v1/tenant": {"get"},
    "/api/v1/keys": {"get", "post"},
    "/api/v1/keys/{key_id}/revoke": {"post"},
    "/api/v1/keys/{key_id}/limits": {"get", "patch"},
    "/api/v1/models": {"get", "post"},
    "/api/v1/models/{model_id}": {"get", "delete"},
    "/api/v1/models/{model_id}/versions": {"get"},
    "/api/v1/versions/{version_id}": {"get"},
    "/api/v1/graphs": {"get", "post"},
    "/api/v1/graphs/{graph_id}": {"get", "patch", "delete"},
    "/api/v1/graphs/{graph_id}/versions": {"get", "post"},
    "/api/v1/graphs/{graph_id}/versions/{number}": {"get"},
    "/api/v1/graphs/validate": {"post"},
    "/api/v1/graphs/ops": {"get"},
    "/api/v1/deployments": {"get", "post"},
    "/api/v1/deployments/{deployment_id}": {"get", "patch", "delete"},
    "/api/v1/deployments/{deployment_id}/unload": {"post"},
    "/api/v1/deployments/{deployment_id}/nodes": {"get"},
    "/api/v1/deployments/{deployment_id}/limits": {"get", "patch"},
    "/api/v1/quotas": {"get"},
    "/api/v1/usage": {"get"},
    "/api/v1/usage/summary": {"get"},
    "/api/v1/usage/timeseries": {"get"},
    "/api/v1/billing/current": {"get"},
    "/api/v1/billing/invoices": {"get"},
    "/api/v1/billing/invoices/{invoice_id}": {"get"},
    "/api/v1/billing/invoices/{invoice_id}.pdf": {"get"},
    "/api/v1/billing/invoices/{invoice_id}.csv": {"get"},
    "/api/v1/billing/invoices/{invoice_id}/lines/{line_id}/requests": {"get"},
    "/api/v1/billing/prices": {"get"},
    "/api/v1/billing/spend-limit": {"patch"},
    "/api/v1/audit-log": {"get"},
    "/api/v1/admin/plans": {"get", "post"},
    "/api/v1/admin/plans/{plan_id}": {"get", "patch"},
    "/api/v1/admin/quotas": {"get", "post"},
    "/api/v1/admin/quotas/{quota_id}": {"get", "patch", "delete"},
    "/api/v1/admin/tenants/{tenant_id}/plan": {"put"},
}


@pytest.fixture
def schema(alice):
    response = session_client(alice).get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    return response.json()


def test_the_schema_documents_every_endpoint_and_its_errors(schema):
    paths = {path: set(ops) for path, ops in schema["paths"].items()}
    assert paths == PATHS
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            assert {"401", "403"} <= set(operation["responses"]), (method, path)
            assert operation["summary"], (method, path)
    error = schema["components"]["schemas"]["Error"]
    assert error["properties"]["error"] == {"$ref": "#/components/schemas/ErrorDetail"}


def test_the_schema_documents_the_multipart_upload_and_its_result(schema):
    upload = schema["paths"]["/api/v1/models"]["post"]
    assert list(upload["requestBody"]["content"]) == ["multipart/form-data"]
    form = schema["components"]["schemas"]["ModelUploadRequest"]
    assert form["properties"]["file"] == {
        "type": "string", "format": "binary", "description": "A self-contained .onnx file (no external data)"}
    assert set(form["required"]) == {"name", "file"}
    assert {"201", "400", "413"} <= set(upload["responses"])
    version = schema["components"]["schemas"]["ModelVersion"]["properties"]
    assert {"inputs", "outputs", "has_batch_dim", "opset", "size_bytes", "sha256"} <= set(version)
    tensor = schema["components"]["schemas"]["Tensor"]["properties"]
    assert set(tensor) == {"name", "datatype", "shape"}


def test_the_schema_documents_pagination_and_query_parameters(schema):
    usage = schema["paths"]["/api/v1/usage"]["get"]
    assert {p["name"] for p in usage["parameters"]} == {"deployment", "limit", "offset"}
    assert usage["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "PaginatedUsageEventList")
    timeseries = schema["paths"]["/api/v1/usage/timeseries"]["get"]
    [minutes] = timeseries["parameters"]
    assert minutes["name"] == "minutes" and minutes["schema"]["maximum"] == 1440
    deployments = schema["paths"]["/api/v1/deployments"]["get"]
    assert [p["name"] for p in deployments["parameters"]] == ["history"]


def test_the_swagger_ui_renders_from_local_assets(alice):
    response = session_client(alice).get("/api/v1/docs/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "SwaggerUIBundle" in page and "/api/v1/schema/" in page
    assert "cdn.jsdelivr.net" not in page and "unpkg.com" not in page


def test_the_schema_builds_without_warnings_and_names_each_shared_choice_set_once():
    from drf_spectacular.drainage import GENERATOR_STATS
    from drf_spectacular.generators import SchemaGenerator

    GENERATOR_STATS.reset()
    components = SchemaGenerator().get_schema(request=None, public=True)["components"]["schemas"]
    assert not GENERATOR_STATS, dict(GENERATOR_STATS._warn_cache)
    enums = {name for name in components if name.endswith("Enum")}
    assert {"EnforcementEnum", "HardwareEnum"} <= enums
    assert not {"MonthlyRequestsEnforcementEnum", "MonthlyComputeEnforcementEnum", "AllowedHardwareEnum"} & enums
