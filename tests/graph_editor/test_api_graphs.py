"""Graphs and their versions through the REST API: create, list, read, rename, delete;
versions validated and numbered; validate answering without saving; who may call what;
another tenant's graph is 404 everywhere; and the schema documents it all with examples."""
import pytest

from graph_editor.models import Graph, GraphVersion
from graph_editor.services import model_version_upload
from graph_editor.services_graphs import graph_create, graph_version_create
from tenants.models import AuditLog
from tests.api_helpers import key_client, owner_client, session_client
from tests.graph_editor.test_services_graphs import cast_spec, model_spec

pytestmark = pytest.mark.django_db

PIXELS = [{"name": "pixels", "datatype": "FP32", "shape": [-1, 64]}]
IMAGE = [{"name": "image", "datatype": "UINT8", "shape": [-1, 64]}]


@pytest.fixture(autouse=True)
def storage(settings, tmp_path):
    settings.MODEL_STORAGE_DIR = tmp_path / "models"


@pytest.fixture
def digits_version(acme, digits_onnx):
    return model_version_upload(tenant=acme, model_name="digits", chunks=[digits_onnx])


def new_graph(client, name="pipeline", **extra):
    response = client.post("/api/v1/graphs", {"name": name, **extra}, format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def save_version(client, graph_id: int, spec, message="") -> dict:
    return client.post(f"/api/v1/graphs/{graph_id}/versions", {"spec": spec, "message": message}, format="json")


@pytest.mark.parametrize("auth", ["key", "session"])
def test_a_graph_is_created_listed_read_renamed_and_deleted(acme, alice, auth):
    client = owner_client(auth, acme, alice)
    created = new_graph(client, description="cast, classify")
    assert set(created) == {"id", "name", "description", "created_at", "updated_at", "latest_version"}
    assert (created["name"], created["description"], created["latest_version"]) == (
        "pipeline", "cast, classify", None)
    new_graph(client, "another")

    listed = client.get("/api/v1/graphs").json()
    assert listed["count"] == 2 and [g["name"] for g in listed["results"]] == ["another", "pipeline"]
    assert client.get("/api/v1/graphs?limit=1&offset=1").json()["results"] == [created]
    assert client.get(f"/api/v1/graphs/{created['id']}").json() == created

    renamed = client.patch(f"/api/v1/graphs/{created['id']}", {"name": "digits-pipeline"}, format="json")
    assert renamed.status_code == 200, renamed.json()
    assert (renamed.json()["name"], renamed.json()["description"]) == ("digits-pipeline", "cast, classify")
    described = client.patch(f"/api/v1/graphs/{created['id']}", {"description": ""}, format="json").json()
    assert (described["name"], described["description"]) == ("digits-pipeline", "")

    assert client.delete(f"/api/v1/graphs/{created['id']}").status_code == 204
    assert client.get(f"/api/v1/graphs/{created['id']}").status_code == 404
    assert [g["name"] for g in client.get("/api/v1/graphs").json()["results"]] == ["another"]


@pytest.mark.parametrize("method, body, status, code, message", [
    ("post", {"name": "Bad Name"}, 400, "invalid_name", "Invalid graph name 'Bad Name'"),
    ("post", {}, 400, "invalid_request", "name: This field is required."),
    ("post", {"name": "taken"}, 409, "conflict", "A graph named 'taken' already exists"),
    ("patch", {"name": "taken"}, 409, "conflict", "A graph named 'taken' already exists"),
    ("patch", {"name": "no spaces"}, 400, "invalid_name", "use 1-63 lowercase letters, digits and hyphens"),
    ("patch", {}, 400, "invalid_request", "Give a 'name' or a 'description' to change."),
])
def test_a_bad_name_or_a_taken_one_is_refused(acme, method, body, status, code, message):
    client = key_client(acme)
    new_graph(client, "taken")
    mine = new_graph(client, "mine")
    url = "/api/v1/graphs" if method == "post" else f"/api/v1/graphs/{mine['id']}"
    response = getattr(client, method)(url, body, format="json")
    assert response.status_code == status, response.json()
    assert response.json()["error"]["code"] == code and message in response.json()["error"]["message"]
    assert sorted(Graph.objects.for_tenant(acme).values_list("name", flat=True)) == ["mine", "taken"]


def test_another_tenant_may_use_the_same_name(acme, globex):
    new_graph(key_client(acme))
    assert new_graph(key_client(globex))["name"] == "pipeline"


@pytest.mark.parametrize("auth", ["key", "session"])
def test_versions_are_validated_numbered_and_read_back(acme, alice, digits_version, auth):
    client = owner_client(auth, acme, alice)
    graph = new_graph(client)
    first = save_version(client, graph["id"], cast_spec(), "cast only")
    assert first.status_code == 201, first.json()
    first = first.json()
    assert set(first) == {"id", "number", "spec", "message", "author", "created_at", "inputs", "outputs"}
    assert (first["number"], first["message"], first["spec"]) == (1, "cast only", cast_spec())
    assert (first["inputs"], first["outputs"]) == (IMAGE, PIXELS)
    assert first["author"] == ("alice" if auth == "session" else None)

    second = save_version(client, graph["id"], model_spec(digits_version.pk)).json()
    assert second["number"] == 2 and second["message"] == ""
    assert second["outputs"] == [{"name": "label", "datatype": "INT64", "shape": [-1]}]

    summary = ("id", "number", "message", "author", "created_at")
    assert client.get(f"/api/v1/graphs/{graph['id']}/versions").json() == [
        {key: version[key] for key in summary} for version in (second, first)]
    assert client.get(f"/api/v1/graphs/{graph['id']}/versions/1").json() == first
    assert client.get(f"/api/v1/graphs/{graph['id']}/versions/2").json() == second
    assert client.get(f"/api/v1/graphs/{graph['id']}").json()["latest_version"] == 2
    missing = client.get(f"/api/v1/graphs/{graph['id']}/versions/3")
    assert missing.status_code == 404 and missing.json()["error"]["message"] == "This graph has no version 3."


def test_an_invalid_spec_is_400_with_every_issue_and_saves_nothing(acme, digits_version):
    client = key_client(acme)
    graph = new_graph(client)
    # The classifier takes FP32 and gets UINT8; the cast has an unknown datatype.
    spec = model_spec(digits_version.pk)
    spec["edges"][0:2] = [{"from": "in.image", "to": "clf.X"}]
    spec["nodes"][1]["params"]["to"] = "NOT_A_TYPE"
    response = save_version(client, graph["id"], spec, "broken")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_graph"
    codes = {issue["code"] for issue in error["errors"]}
    assert "dtype_mismatch" in codes and len(error["errors"]) >= 2
    assert error["message"] == error["errors"][0]["message"]
    assert all(set(issue) == {"code", "message", "node", "port", "edge"} for issue in error["errors"])
    mismatch = next(issue for issue in error["errors"] if issue["code"] == "dtype_mismatch")
    assert mismatch["edge"] == 0 and "clf" in mismatch["message"]
    assert not GraphVersion.unscoped.exists()
    assert client.get(f"/api/v1/graphs/{graph['id']}").json()["latest_version"] is None


@pytest.mark.parametrize("body, code", [
    ({"message": "no spec"}, "invalid_request"),
    ({"spec": "not an object"}, "invalid_graph"),
    ({"spec": {"nodes": [], "edges": []}}, "invalid_graph"),
    ({"spec": cast_spec(), "message": "m" * 1001}, "invalid_request"),
])
def test_a_malformed_version_request_is_400(acme, body, code):
    client = key_client(acme)
    graph = new_graph(client)
    response = client.post(f"/api/v1/graphs/{graph['id']}/versions", body, format="json")
    assert response.status_code == 400 and response.json()["error"]["code"] == code, response.json()
    assert not GraphVersion.unscoped.exists()


@pytest.mark.parametrize("user", ["alice", "carol"])
def test_validate_answers_without_saving(acme, digits_version, request, user):
    client = session_client(request.getfixturevalue(user))
    valid = client.post("/api/v1/graphs/validate", {"spec": model_spec(digits_version.pk)}, format="json")
    assert valid.status_code == 200, valid.json()
    body = valid.json()
    assert (body["valid"], body["errors"], body["inputs"]) == (True, [], IMAGE)
    assert body["outputs"] == [{"name": "label", "datatype": "INT64", "shape": [-1]}]
    assert body["ports"]["prep.y"]["datatype"] == "FP32" and body["ports"]["clf.X"]["datatype"] == "FP32"

    invalid = client.post("/api/v1/graphs/validate", {"spec": cast_spec("NOT_A_TYPE")}, format="json").json()
    assert invalid["valid"] is False and invalid["errors"][0]["node"] == "prep"
    assert not Graph.unscoped.exists() and not GraphVersion.unscoped.exists()
    assert not AuditLog.objects.for_tenant(acme).exists()


def test_the_op_catalogue_lists_the_built_in_ops(acme, carol):
    ops = session_client(carol).get("/api/v1/graphs/ops").json()
    by_name = {op["op"]: op for op in ops}
    assert {"cast", "scale", "normalize", "reshape", "flatten", "concat", "slice", "softmax", "argmax", "topk",
            "where", "merge"} <= set(by_name)
    assert by_name["cast"]["inputs"] == ["x"] and by_name["cast"]["outputs"] == ["y"]
    assert by_name["cast"]["params"]["to"]["required"] is True


def test_a_version_cannot_be_changed_or_deleted(acme):
    client = key_client(acme)
    graph = new_graph(client)
    save_version(client, graph["id"], cast_spec(), "first")
    url = f"/api/v1/graphs/{graph['id']}/versions/1"
    for method in ("put", "patch", "delete"):
        response = getattr(client, method)(url, {"message": "rewritten"}, format="json")
        assert response.status_code == 405 and response.json()["error"]["code"] == "method_not_allowed"
    assert client.get(url).json()["message"] == "first"


@pytest.fixture
def acme_graph(acme):
    graph = graph_create(tenant=acme, name="pipeline")
    graph_version_create(tenant=acme, graph_id=graph.pk, spec=cast_spec(), message="first")
    return graph


def acme_graph_untouched(graph) -> bool:
    current = Graph.unscoped.filter(pk=graph.pk).first()
    return (current is not None and current.name == "pipeline"
            and list(GraphVersion.unscoped.filter(graph=graph).values_list("number", flat=True)) == [1])


GRAPH_READS = ["/api/v1/graphs", "/api/v1/graphs/{graph}", "/api/v1/graphs/{graph}/versions",
               "/api/v1/graphs/{graph}/versions/1", "/api/v1/graphs/ops"]
GRAPH_WRITES = [
    ("post", "/api/v1/graphs", {"name": "another"}),
    ("patch", "/api/v1/graphs/{graph}", {"name": "renamed"}),
    ("delete", "/api/v1/graphs/{graph}", None),
    ("post", "/api/v1/graphs/{graph}/versions", {"spec": cast_spec("FP64")}),
]


@pytest.mark.parametrize("path", GRAPH_READS)
def test_a_member_can_read(acme_graph, carol, path):
    response = session_client(carol).get(path.format(graph=acme_graph.pk))
    assert response.status_code == 200, response.json()


@pytest.mark.parametrize("method, path, body", GRAPH_WRITES)
def test_a_member_cannot_write(acme_graph, carol, method, path, body):
    response = getattr(session_client(carol), method)(path.format(graph=acme_graph.pk), body, format="json")
    assert response.status_code == 403
    assert response.json()["error"] == {"code": "permission_denied",
                                        "message": "Your role in this tenant is read-only (member); ask an owner "
                                                   "or admin."}
    assert acme_graph_untouched(acme_graph) and Graph.unscoped.count() == 1


@pytest.mark.parametrize("method, path, body", [("get", path, None) for path in GRAPH_READS] + GRAPH_WRITES
                         + [("post", "/api/v1/graphs/validate", {"spec": cast_spec()})])
def test_an_infer_only_key_is_refused(acme, acme_graph, method, path, body):
    client = key_client(acme, scopes=("infer",))
    response = getattr(client, method)(path.format(graph=acme_graph.pk), body, format="json")
    assert response.status_code == 403
    assert response.json()["error"] == {"code": "permission_denied",
                                        "message": "This API key lacks the 'manage' scope."}
    assert acme_graph_untouched(acme_graph)


@pytest.mark.parametrize("method, path, body", [
    ("get", "/api/v1/graphs/{graph}", None),
    ("patch", "/api/v1/graphs/{graph}", {"name": "taken-over"}),
    ("delete", "/api/v1/graphs/{graph}", None),
    ("get", "/api/v1/graphs/{graph}/versions", None),
    ("post", "/api/v1/graphs/{graph}/versions", {"spec": cast_spec("FP64")}),
    ("post", "/api/v1/graphs/{graph}/versions", {"spec": "invalid too"}),
    ("get", "/api/v1/graphs/{graph}/versions/1", None),
])
@pytest.mark.parametrize("auth", ["key", "session"])
def test_another_tenants_graph_is_404_on_every_graph_url(acme_graph, globex, bob, auth, method, path, body):
    client = owner_client(auth, globex, bob)
    response = getattr(client, method)(path.format(graph=acme_graph.pk), body, format="json")
    assert response.status_code == 404
    assert response.json()["error"] == {"code": "not_found", "message": "No such graph in this tenant."}
    assert client.get("/api/v1/graphs").json()["count"] == 0
    assert acme_graph_untouched(acme_graph)


def test_a_spec_naming_another_tenants_model_version_is_refused(acme, globex, digits_onnx):
    theirs = model_version_upload(tenant=globex, model_name="digits", chunks=[digits_onnx])
    client = key_client(acme)
    graph = new_graph(client)
    response = save_version(client, graph["id"], model_spec(theirs.pk))
    assert response.status_code == 400
    [issue] = response.json()["error"]["errors"]
    assert issue["code"] == "model_version_not_found" and issue["node"] == "clf"
    checked = client.post("/api/v1/graphs/validate", {"spec": model_spec(theirs.pk)}, format="json").json()
    assert [issue["code"] for issue in checked["errors"]] == ["model_version_not_found"]
    assert not GraphVersion.unscoped.exists()


def test_the_api_records_who_changed_a_graph(acme, alice):
    client = session_client(alice)
    graph = new_graph(client)
    client.patch(f"/api/v1/graphs/{graph['id']}", {"name": "renamed"}, format="json")
    save_version(client, graph["id"], cast_spec(), "first")
    client.delete(f"/api/v1/graphs/{graph['id']}")
    rows = AuditLog.objects.for_tenant(acme).order_by("id")
    assert [(row.event_type, row.surface, row.acting_user) for row in rows] == [
        ("graph.created", "api", alice), ("graph.changed", "api", alice),
        ("graph_version.created", "api", alice), ("graph.deleted", "api", alice)]


GRAPH_PATHS = ["/api/v1/graphs", "/api/v1/graphs/{graph_id}", "/api/v1/graphs/{graph_id}/versions",
               "/api/v1/graphs/{graph_id}/versions/{number}", "/api/v1/graphs/validate", "/api/v1/graphs/ops"]


@pytest.fixture
def schema(alice):
    response = session_client(alice).get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    return response.json()


def examples_of(operation: dict) -> list[dict]:
    bodies = [operation.get("requestBody", {})] + list(operation["responses"].values())
    return [example for body in bodies for content in body.get("content", {}).values()
            for example in content.get("examples", {}).values()]


def test_the_schema_documents_every_graph_endpoint_with_an_example(schema):
    for path in GRAPH_PATHS:
        for method, operation in schema["paths"][path].items():
            if method == "delete":
                assert "204" in operation["responses"] and "404" in operation["responses"]
                continue
            assert examples_of(operation), (method, path)
    create = schema["paths"]["/api/v1/graphs/{graph_id}/versions"]["post"]
    [spec_example] = [e["value"]["spec"] for e in examples_of(create) if "spec" in e.get("value", {})][:1]
    assert {node["kind"] for node in spec_example["nodes"]} == {"input", "op", "model", "output"}
    invalid = create["responses"]["400"]["content"]["application/json"]
    detail = schema["components"]["schemas"][invalid["schema"]["$ref"].rsplit("/", 1)[1]]["properties"]["error"]
    assert "errors" in schema["components"]["schemas"][detail["$ref"].rsplit("/", 1)[1]]["properties"]
    spec = schema["components"]["schemas"]["GraphVersionCreateRequest"]["properties"]["spec"]
    assert set(spec["properties"]) == {"nodes", "edges"}


def test_the_documented_example_spec_is_valid(acme, digits_version):
    from graph_editor.api_graphs import EXAMPLE_PORTS, EXAMPLE_SPEC

    spec = {**EXAMPLE_SPEC, "nodes": [{**node, "model_version": digits_version.pk} if node["kind"] == "model"
                                      else node for node in EXAMPLE_SPEC["nodes"]]}
    body = key_client(acme).post("/api/v1/graphs/validate", {"spec": spec}, format="json").json()
    assert body["valid"] is True, body["errors"]
    assert {port: body["ports"][port] for port in EXAMPLE_PORTS} == EXAMPLE_PORTS
