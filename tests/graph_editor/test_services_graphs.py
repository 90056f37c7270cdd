"""Graph services and selectors against the real database: create, rename, delete, versions
numbered under a lock, invalid specs saving nothing, tenancy and the audit log."""
import threading

import pytest
from django.db import connection

from gateway.contract.errors import Conflict, NotFound, PlatformError
from graph_editor import services_graphs
from graph_editor.models import Graph, GraphVersion
from graph_editor.selectors import graph_get, graph_list, graph_version_get, graph_version_list
from graph_editor.services import model_version_upload
from graph_editor.services_graphs import (
    InvalidGraph,
    graph_create,
    graph_delete,
    graph_update,
    graph_version_create,
)
from tenants.models import AuditLog


def cast_spec(datatype: str = "FP32") -> dict:
    """input (UINT8 [-1, 64]) -> cast -> output "pixels"."""
    return {
        "nodes": [
            {"id": "in", "kind": "input", "tensors": [{"name": "image", "datatype": "UINT8", "shape": [-1, 64]}]},
            {"id": "prep", "kind": "op", "op": "cast", "params": {"to": datatype}},
            {"id": "out", "kind": "output"},
        ],
        "edges": [{"from": "in.image", "to": "prep.x"}, {"from": "prep.y", "to": "out.pixels"}],
    }


def model_spec(model_version_id: int) -> dict:
    """input (UINT8 [-1, 64]) -> cast to FP32 -> the digits classifier -> output "label"."""
    spec = cast_spec()
    spec["nodes"].insert(2, {"id": "clf", "kind": "model", "model_version": model_version_id})
    spec["edges"][1:] = [{"from": "prep.y", "to": "clf.X"}, {"from": "clf.label", "to": "out.label"}]
    return spec


@pytest.fixture(autouse=True)
def storage(settings, tmp_path):
    settings.MODEL_STORAGE_DIR = tmp_path / "models"


@pytest.fixture
def pipeline(acme):
    return graph_create(tenant=acme, name="pipeline", description="cast")


def audit_events(tenant) -> list[tuple[str, str, dict | None, dict | None]]:
    return [(row.event_type, row.object_repr, row.old_value, row.new_value)
            for row in AuditLog.objects.for_tenant(tenant).order_by("id")]


@pytest.mark.django_db
def test_a_graph_is_created_renamed_and_deleted_and_each_change_is_audited(acme, alice):
    graph = graph_create(tenant=acme, name="pipeline", description="cast", actor=alice)
    assert (graph.name, graph.description, graph.created_by) == ("pipeline", "cast", alice)
    graph_update(tenant=acme, graph_id=graph.pk, name="pipeline-2")
    graph_update(tenant=acme, graph_id=graph.pk, name="pipeline-2")  # no change, no record
    graph_version_create(tenant=acme, graph_id=graph.pk, spec=cast_spec(), message="first", actor=alice)
    graph_delete(tenant=acme, graph_id=graph.pk)
    assert not Graph.unscoped.exists() and not GraphVersion.unscoped.exists()
    assert audit_events(acme) == [
        ("graph.created", "pipeline", None, {"name": "pipeline", "description": "cast"}),
        ("graph.changed", "pipeline-2", {"name": "pipeline"}, {"name": "pipeline-2"}),
        ("graph_version.created", "pipeline-2 v1", None, {"graph": graph.pk, "number": 1, "message": "first"}),
        ("graph.deleted", "pipeline-2", {"name": "pipeline-2", "versions": 1}, None),
    ]


@pytest.mark.django_db
@pytest.mark.parametrize("name, code", [
    ("Bad Name", "invalid_name"), ("", "invalid_name"), ("a" * 64, "invalid_name"), ("-dash", "invalid_name"),
])
def test_a_graph_name_must_be_a_slug(acme, name, code):
    with pytest.raises(PlatformError) as refused:
        graph_create(tenant=acme, name=name)
    assert refused.value.code == code and "lowercase letters, digits and hyphens" in refused.value.message
    assert not Graph.unscoped.exists()


@pytest.mark.django_db
def test_names_are_unique_per_tenant(acme, globex, pipeline):
    with pytest.raises(Conflict, match="A graph named 'pipeline' already exists"):
        graph_create(tenant=acme, name="pipeline")
    other = graph_create(tenant=acme, name="other")
    with pytest.raises(Conflict):
        graph_update(tenant=acme, graph_id=other.pk, name="pipeline")
    assert graph_create(tenant=globex, name="pipeline").tenant == globex
    assert Graph.objects.for_tenant(acme).get(pk=other.pk).name == "other"


@pytest.mark.django_db
def test_versions_are_numbered_per_graph_and_keep_the_signature(acme, alice, pipeline):
    first = graph_version_create(tenant=acme, graph_id=pipeline.pk, spec=cast_spec(), message="v1", actor=alice)
    second = graph_version_create(tenant=acme, graph_id=pipeline.pk, spec=cast_spec("FP64"), actor=alice)
    other = graph_version_create(tenant=acme, graph_id=graph_create(tenant=acme, name="other").pk, spec=cast_spec())
    assert (first.number, second.number, other.number) == (1, 2, 1)
    assert first.inputs == [{"name": "image", "datatype": "UINT8", "shape": [-1, 64]}]
    assert first.outputs == [{"name": "pixels", "datatype": "FP32", "shape": [-1, 64]}]
    assert second.outputs == [{"name": "pixels", "datatype": "FP64", "shape": [-1, 64]}]
    assert (first.author, first.message, first.spec) == (alice, "v1", cast_spec())
    assert list(graph_version_list(tenant=acme, graph_id=pipeline.pk)) == [second, first]
    assert graph_get(tenant=acme, graph_id=pipeline.pk).latest_version == 2


@pytest.mark.django_db
def test_a_version_is_immutable(acme, pipeline):
    version = graph_version_create(tenant=acme, graph_id=pipeline.pk, spec=cast_spec())
    version.message = "rewritten"
    with pytest.raises(ValueError, match="immutable"):
        version.save()
    assert GraphVersion.objects.for_tenant(acme).get().message == ""


@pytest.mark.django_db
@pytest.mark.parametrize("spec, code", [
    (cast_spec("NOT_A_TYPE"), "invalid_params"),
    ({"nodes": "none"}, "invalid_spec"),
    ([], "invalid_spec"),
])
def test_an_invalid_spec_raises_with_its_issues_and_saves_nothing(acme, pipeline, spec, code):
    with pytest.raises(InvalidGraph) as refused:
        graph_version_create(tenant=acme, graph_id=pipeline.pk, spec=spec)
    issues = refused.value.issues
    assert issues and code in {issue.code for issue in issues}
    body = refused.value.as_dict()["error"]
    assert body["code"] == "invalid_graph" and body["message"] == issues[0].message
    assert body["errors"][0] == {"code": issues[0].code, "message": issues[0].message, "node": issues[0].node,
                                 "port": issues[0].port, "edge": issues[0].edge}
    assert not GraphVersion.unscoped.exists()
    assert not AuditLog.objects.for_tenant(acme).filter(event_type="graph_version.created").exists()


@pytest.mark.django_db
def test_a_spec_naming_another_tenants_model_version_is_refused(acme, globex, digits_onnx, pipeline):
    own = model_version_upload(tenant=acme, model_name="digits", chunks=[digits_onnx])
    theirs = model_version_upload(tenant=globex, model_name="digits", chunks=[digits_onnx])
    assert graph_version_create(tenant=acme, graph_id=pipeline.pk, spec=model_spec(own.pk)).number == 1
    with pytest.raises(InvalidGraph) as refused:
        graph_version_create(tenant=acme, graph_id=pipeline.pk, spec=model_spec(theirs.pk))
    assert [issue.code for issue in refused.value.issues] == ["model_version_not_found"]
    assert refused.value.issues[0].node == "clf"
    assert GraphVersion.objects.for_tenant(acme).count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize("call", [
    lambda tenant, graph: graph_get(tenant=tenant, graph_id=graph.pk),
    lambda tenant, graph: graph_version_list(tenant=tenant, graph_id=graph.pk),
    lambda tenant, graph: graph_version_get(tenant=tenant, graph_id=graph.pk, number=1),
    lambda tenant, graph: graph_update(tenant=tenant, graph_id=graph.pk, name="taken-over"),
    lambda tenant, graph: graph_delete(tenant=tenant, graph_id=graph.pk),
    lambda tenant, graph: graph_version_create(tenant=tenant, graph_id=graph.pk, spec=cast_spec()),
], ids=["get", "version_list", "version_get", "update", "delete", "version_create"])
def test_another_tenants_graph_is_not_found(acme, globex, pipeline, call):
    graph_version_create(tenant=acme, graph_id=pipeline.pk, spec=cast_spec())
    with pytest.raises(NotFound):
        call(globex, pipeline)
    assert list(graph_list(tenant=globex)) == []
    graph = graph_get(tenant=acme, graph_id=pipeline.pk)
    assert (graph.name, graph.latest_version) == ("pipeline", 1)


@pytest.mark.django_db
def test_a_missing_version_number_is_not_found(acme, pipeline):
    with pytest.raises(NotFound, match="no version 3"):
        graph_version_get(tenant=acme, graph_id=pipeline.pk, number=3)


@pytest.mark.django_db(transaction=True)
def test_concurrent_saves_get_consecutive_numbers(acme, pipeline, monkeypatch):
    # Each save waits, after validating, for the other to have validated too. Without the
    # graph's row lock both would then read the same last number; with it the second save
    # waits for the first to commit, the wait times out, and the numbers are 1 and 2.
    both_validated = threading.Barrier(2, timeout=1)
    validate = services_graphs.graph_validate

    def validate_and_wait(**kwargs):
        check = validate(**kwargs)
        try:
            both_validated.wait()
        except threading.BrokenBarrierError:
            pass
        return check

    monkeypatch.setattr(services_graphs, "graph_validate", validate_and_wait)
    numbers, errors = [], []

    def save():
        try:
            numbers.append(graph_version_create(tenant=acme, graph_id=pipeline.pk, spec=cast_spec()).number)
        except Exception as exc:  # the failure the test reports
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=save) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert sorted(numbers) == [1, 2]
    assert sorted(GraphVersion.objects.for_tenant(acme).values_list("number", flat=True)) == [1, 2]
