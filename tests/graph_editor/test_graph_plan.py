"""A graph cut into units for the ensemble and BLS executors: model nodes stay alone (and
are named by their model version, so graphs share them), built-in ops are grouped and
fused; the units run one by one (an untaken branch skipped, as the orchestrator does)
answer what the fused graph answers; every generated config parses as Triton's
ModelConfig; an ensemble is refused for a switch."""
import json

import numpy as np
import onnxruntime as ort
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from graph_editor.graphs.fuse import graph_fuse
from graph_editor.graphs.plan import ensemble_refusal, graph_plan
from tests.graph_editor.test_graph_fuse import assert_same, fused_run, images, session, switch_spec, three_node_spec
from workers.models import Deployment, Executor, TritonServer
from workers.services import deployment_create
from workers.services.units import (
    _ensemble_text,
    _orchestrator_files,
    _orchestrator_text,
    _unit_config,
    deployment_plan,
    unit_triton_name,
)

NUMPY = {"UINT8": np.uint8, "INT64": np.int64, "FP32": np.float32, "BOOL": np.bool_, "BYTES": object}


@pytest.fixture(autouse=True)
def storage(settings, tmp_path):
    settings.MODEL_STORAGE_DIR = tmp_path / "models"


def units_run(tenant, plan, image: np.ndarray) -> dict[str, np.ndarray]:
    """What the orchestrator does, with onnxruntime sessions for the units: a unit whose
    inputs all have 0 rows is skipped and its outputs are empty."""
    from graph_editor.models import ModelVersion

    values = {"image": image}
    for unit in plan.units:
        feeds = {t.name: values[t.ref] for t in unit.inputs}
        if plan.batched and all(v.shape[0] == 0 for v in feeds.values()):
            for t in unit.outputs:
                values[t.ref] = np.zeros([0] + [max(d, 0) for d in t.signature()["shape"][1:]], NUMPY[t.datatype])
            continue
        if unit.kind == "segment":
            step = ort.InferenceSession(unit.onnx_bytes, providers=["CPUExecutionProvider"])
        else:
            step = ort.InferenceSession(str(ModelVersion.unscoped.get(pk=unit.model_version).absolute_path),
                                        providers=["CPUExecutionProvider"])
        names = [t.name for t in unit.outputs]
        for t, value in zip(unit.outputs, step.run(names, feeds), strict=True):
            values[t.ref] = value
    return {name: values[ref] for name, ref in plan.output_refs}


@pytest.mark.django_db
def test_the_three_node_graph_groups_its_ops_around_the_model(acme, digits):
    plan = graph_plan(tenant=acme, spec=three_node_spec(digits.pk))
    assert [(u.kind, u.nodes) for u in plan.units] == [
        ("segment", ["prep", "norm", "flat"]), ("model", ["clf"]), ("segment", ["top", "names"])]
    assert plan.units[1].key == f"mv{digits.pk}" and all(u.batched for u in plan.units)
    assert [(t.name, t.ref) for t in plan.units[0].inputs] == [("image", "image")]
    assert [(t.name, t.ref) for t in plan.units[1].inputs] == [("X", "flat.y")]
    assert plan.output_refs == [("name", "names.y"), ("score", "top.values")]
    assert ensemble_refusal(plan) is None and not plan.has_switch
    assert plan.node_units["norm"] == plan.units[0].key


@pytest.mark.django_db
@pytest.mark.parametrize("threshold, fallback_answers", [(1.01, True), (0.0, False)])
@pytest.mark.parametrize("batch", [1, 8])
def test_units_run_one_by_one_answer_what_the_fused_graph_answers(acme, digits, fallback, threshold,
                                                                  fallback_answers, batch):
    spec = switch_spec(digits.pk, fallback.pk, threshold=threshold)
    plan = graph_plan(tenant=acme, spec=spec)
    assert plan.has_switch and "switch" in ensemble_refusal(plan)
    switch_unit = next(u for u in plan.units if "unsure" in u.nodes)
    assert not switch_unit.batched  # its branches' rows differ: Triton takes it whole
    image = images(batch)
    want = fused_run(session(graph_fuse(tenant=acme, spec=spec).model), image)
    assert_same(units_run(acme, plan, image), want)


@pytest.mark.django_db
def test_the_same_model_version_is_one_unit_in_two_graphs(acme, digits, fallback):
    first = graph_plan(tenant=acme, spec=three_node_spec(digits.pk))
    second = graph_plan(tenant=acme, spec=switch_spec(digits.pk, fallback.pk, threshold=0.5))
    assert {u.key for u in first.units if u.kind == "model"} & {u.key for u in second.units} == {f"mv{digits.pk}"}
    # the same ops in the same graph give the same segment, whatever graph version they are saved in
    again = graph_plan(tenant=acme, spec=three_node_spec(digits.pk))
    assert [u.key for u in again.units] == [u.key for u in first.units]


@pytest.mark.django_db
@pytest.mark.parametrize("executor", [Executor.ENSEMBLE, Executor.BLS])
def test_every_generated_config_parses_as_tritons_model_config(acme, digits, fallback, executor):
    from graph_editor.services_graphs import graph_create, graph_version_create

    spec = three_node_spec(digits.pk) if executor == Executor.ENSEMBLE else switch_spec(digits.pk, fallback.pk, 0.5)
    graph = graph_create(tenant=acme, name="g")
    version = graph_version_create(tenant=acme, graph_id=graph.pk, spec=spec, message="v1")
    deployment = Deployment.unscoped.get(pk=deployment_create(tenant=acme, graph_version_id=version.pk,
                                                              executor=executor).pk)
    assert deployment.executor == executor
    server = TritonServer.objects.create(name="local", http_url="http://127.0.0.1:1", repository_path="/tmp/x",
                                         backends=["python"])
    plan = deployment_plan(deployment)
    names = [unit_triton_name(deployment, unit) for unit in plan.units]
    for unit, name in zip(plan.units, names, strict=True):
        config = text_format.Parse(_unit_config(deployment, unit, server, name, 2), mc.ModelConfig())
        assert config.name == name and config.backend == "python" and config.instance_group[0].count == 2
        assert [i.name for i in config.input] == [t.name for t in unit.inputs]
        assert config.max_batch_size == (64 if unit.batched else 0)
    if executor == Executor.ENSEMBLE:
        config = text_format.Parse(_ensemble_text(deployment, plan, names), mc.ModelConfig())
        assert config.platform == "ensemble" and config.max_batch_size == 64
        assert [s.model_name for s in config.ensemble_scheduling.step] == names
        assert dict(config.ensemble_scheduling.step[0].input_map) == {"image": "image"}
        assert dict(config.ensemble_scheduling.step[2].output_map) == {"names.y": "name", "top.values": "score"}
    else:
        config = text_format.Parse(_orchestrator_text(deployment, plan, 1), mc.ModelConfig())
        assert config.backend == "python" and [o.name for o in config.output] == ["label", "name", "score"]
        orchestrated = json.loads(_orchestrator_files(plan, names)["plan.json"])
        assert [s["model"] for s in orchestrated["steps"]] == names
        assert orchestrated["outputs"][1] == {"name": "name", "ref": "names.y"}
    assert deployment_plan(deployment).units[0].key == plan.units[0].key  # read back from the compiled plan


@pytest.mark.django_db
def test_auto_fuses_light_graphs_and_runs_heavy_ones_as_shared_steps(acme, digits, fallback, settings):
    from graph_editor.services_graphs import graph_create, graph_version_create

    graph = graph_create(tenant=acme, name="g")
    plain = graph_version_create(tenant=acme, graph_id=graph.pk, spec=three_node_spec(digits.pk), message="v1")
    switched = graph_version_create(tenant=acme, graph_id=graph.pk, spec=switch_spec(digits.pk, fallback.pk, 0.5),
                                    message="v2")
    assert deployment_create(tenant=acme, graph_version_id=plain.pk, name="a").executor == Executor.FUSED
    settings.GRAPH_FUSE_MAX_MB = 0
    assert deployment_create(tenant=acme, graph_version_id=plain.pk, name="b").executor == Executor.ENSEMBLE
    assert deployment_create(tenant=acme, graph_version_id=switched.pk, name="c").executor == Executor.BLS


@pytest.mark.django_db
def test_an_ensemble_of_a_switch_graph_is_refused_with_the_reason(acme, digits, fallback):
    from graph_editor.services_graphs import graph_create, graph_version_create
    from tests.api_helpers import key_client

    graph = graph_create(tenant=acme, name="g")
    version = graph_version_create(tenant=acme, graph_id=graph.pk, spec=switch_spec(digits.pk, fallback.pk, 0.5),
                                   message="v1")
    response = key_client(acme).post("/api/v1/deployments", {"graph_version": version.pk, "executor": "ensemble"},
                                     format="json")
    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "invalid_executor",
        "message": "This graph cannot be served as an ensemble: the graph has a switch, and a Triton ensemble has "
                   "no conditionals: use the bls or fused executor."}
    assert not Deployment.unscoped.exists()
    model = key_client(acme).post("/api/v1/deployments", {"model_version": digits.pk, "executor": "bls"},
                                  format="json")
    assert model.status_code == 400 and model.json()["error"]["code"] == "invalid_executor"


@pytest.mark.django_db
def test_every_tensor_an_ensemble_step_reads_is_a_graph_input_or_written_by_a_step(acme, digits):
    """The benchmark's graph returns the classifier's label and also looks it up: the step
    reading it must read it under the graph output's name, as Triton checks at load."""
    from bench.graph import graph_without_switch_spec
    from graph_editor.services_graphs import graph_create, graph_version_create

    graph = graph_create(tenant=acme, name="g")
    version = graph_version_create(tenant=acme, graph_id=graph.pk, spec=graph_without_switch_spec(digits.pk),
                                   message="v1")
    deployment = Deployment.unscoped.get(pk=deployment_create(tenant=acme, graph_version_id=version.pk,
                                                              executor=Executor.ENSEMBLE).pk)
    plan = deployment_plan(deployment)
    names = [unit_triton_name(deployment, unit) for unit in plan.units]
    config = text_format.Parse(_ensemble_text(deployment, plan, names), mc.ModelConfig())
    written = {t.name for t in config.input}
    for step in config.ensemble_scheduling.step:
        assert set(step.input_map.values()) <= written, step.model_name
        written |= set(step.output_map.values())
    assert {t.name for t in config.output} <= written


@pytest.mark.django_db
def test_node_instances_are_checked_against_the_graph_and_its_executor(acme, digits):
    from gateway.contract.errors import PlatformError
    from graph_editor.services_graphs import graph_create, graph_version_create
    from tests.api_helpers import key_client
    from workers.services import deployment_settings_update
    from workers.services.units import unit_instances

    graph = graph_create(tenant=acme, name="g")
    version = graph_version_create(tenant=acme, graph_id=graph.pk, spec=three_node_spec(digits.pk), message="v1")
    client = key_client(acme)
    refusals = [
        ({"executor": "fused", "node_instances": {"clf": 1}}, "node_instances applies to a graph deployed with the "
                                                              "ensemble or bls executor"),
        ({"executor": "ensemble", "node_instances": {"in": 1}}, "node_instances names in, which is not a model, op or "
                                                               "switch node"),
        ({"executor": "ensemble", "max_instances": 2, "node_instances": {"clf": 3}},
         "node_instances['clf'] must be a whole number from 1 to max_instances (2)"),
    ]
    for body, message in refusals:
        response = client.post("/api/v1/deployments", {"graph_version": version.pk, **body}, format="json")
        assert response.status_code == 400 and message in response.json()["error"]["message"], response.json()
    assert not Deployment.unscoped.exists()

    response = client.post("/api/v1/deployments", {"graph_version": version.pk, "executor": "ensemble",
                                                   "max_instances": 3, "node_instances": {"clf": 3, "top": 2}},
                           format="json")
    assert response.status_code == 202 and response.json()["node_instances"] == {"clf": 3, "top": 2}
    deployment = Deployment.unscoped.get(pk=response.json()["id"])
    plan = deployment_plan(deployment)
    assert [unit_instances(deployment, unit, 1) for unit in plan.units] == [1, 3, 2]  # prep+norm+flat, clf, top+names
    changed = deployment_settings_update(tenant=acme, deployment_id=deployment.pk, node_instances={"names": 2})
    assert changed.node_instances == {"names": 2}
    with pytest.raises(PlatformError, match="max_instances"):
        deployment_settings_update(tenant=acme, deployment_id=deployment.pk, max_instances=1)


@pytest.mark.django_db
@pytest.mark.parametrize("executor", ["fused", "ensemble"])
def test_a_graph_deployments_nodes_are_its_tenants_alone(acme, globex, digits, executor):
    from graph_editor.services_graphs import graph_create, graph_version_create
    from tests.api_helpers import key_client

    graph = graph_create(tenant=acme, name="g")
    version = graph_version_create(tenant=acme, graph_id=graph.pk, spec=three_node_spec(digits.pk), message="v1")
    deployment = deployment_create(tenant=acme, graph_version_id=version.pk, executor=executor)
    answer = key_client(acme).get(f"/api/v1/deployments/{deployment.pk}/nodes")
    assert answer.status_code == 200
    body = answer.json()
    assert body["state"] == "pending" and {u["state"] for u in body["units"]} == {"loading"}
    assert all(u["calls"] == 0 and u["p50_ms"] is None for u in body["units"])  # Triton is not asked before ready
    expected = {"fused": [["prep", "norm", "flat", "clf", "top", "names"]],
                "ensemble": [["prep", "norm", "flat"], ["clf"], ["top", "names"], []]}[executor]
    assert [u["nodes"] for u in body["units"]] == expected
    assert body["nodes"]["clf"]["fused"] == (executor == "fused")

    theirs = key_client(globex).get(f"/api/v1/deployments/{deployment.pk}/nodes")
    assert theirs.status_code == 404 and theirs.json()["error"]["code"] == "not_found"
    model = deployment_create(tenant=acme, model_version_id=digits.pk, name="plain")
    refused = key_client(acme).get(f"/api/v1/deployments/{model.pk}/nodes")
    assert refused.status_code == 404
    assert refused.json()["error"]["message"] == "This deployment serves a model version, not a graph."


@pytest.mark.django_db
def test_undeploying_removes_a_graphs_compiled_files_and_passes_a_models_by(acme, digits):
    from graph_editor.services_graphs import graph_create, graph_version_create
    from workers.services.targets import compiled_files_remove

    model = Deployment.unscoped.get(pk=deployment_create(tenant=acme, model_version_id=digits.pk, name="plain").pk)
    compiled_files_remove(model)  # a model deployment compiles nothing: nothing to remove, nothing raised
    graph = graph_create(tenant=acme, name="g")
    version = graph_version_create(tenant=acme, graph_id=graph.pk, spec=three_node_spec(digits.pk), message="v1")
    deployment = Deployment.unscoped.get(pk=deployment_create(tenant=acme, graph_version_id=version.pk,
                                                              executor=Executor.ENSEMBLE).pk)
    deployment_plan(deployment)
    assert deployment.compiled_dir.exists() and deployment.compiled_dir.name.startswith(f"d{deployment.pk}-")
    compiled_files_remove(deployment)
    assert not deployment.compiled_dir.exists()
