"""Graphs whose steps are Triton models of their own, on the real stack: the demo graph
without its switch (the classifier's label both returned and looked up) as a Triton
ensemble and the switch graph under the BLS orchestrator answer through the gateway (HTTP
and gRPC) what the fused graph answers in onnxruntime, one usage event per call; a model
step two graphs use is loaded once, survives the undeploy of one of them and goes with the
last; a graph of units scales to zero and wakes; the nodes endpoint reports each unit's
state and Triton's statistics, and is 404 across tenants."""
import json
import time
from datetime import timedelta
from decimal import Decimal

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http

from bench.graph import graph_without_switch_spec
from bench.stack import wait
from billing.invoicing import month_rating, month_start
from billing.models import UsageEvent
from billing.rollups import hour_start, usage_rollup_hour
from graph_editor.graphs.fuse import graph_fuse
from graph_editor.samples import digits_fallback_classifier_onnx
from graph_editor.services import model_version_upload
from graph_editor.services_graphs import graph_create, graph_version_create
from tenants.services import api_key_create
from tests.api_helpers import key_client
from tests.billing.rating_fixtures import plan_with_prices
from tests.gateway.test_gateway import call, wait_usage
from tests.graph_editor.test_graph_fuse import images, switch_spec
from tests.workers.test_services import wait_for_state
from workers.models import Deployment, DeploymentState, Executor, UnitHold
from workers.services import (
    deployment_create,
    deployment_scale_to_zero,
    deployment_settings_update,
    deployment_undeploy,
)
from workers.services.units import deployment_plan, unit_triton_name
from workers.triton import client as triton

pytestmark = pytest.mark.integration


def fused_answers(tenant, spec, image: np.ndarray) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(graph_fuse(tenant=tenant, spec=spec).model.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, {"image": image}), strict=True))


def assert_equal(got: dict, want: dict) -> None:
    assert set(got) == set(want)
    for name, value in want.items():
        if value.dtype == object:
            assert [v.decode() if isinstance(v, bytes) else v for v in np.asarray(got[name]).ravel()] == \
                [v.decode() if isinstance(v, bytes) else v for v in value.ravel()], name
        else:
            np.testing.assert_allclose(np.asarray(got[name]).reshape(value.shape), value, rtol=1e-5, err_msg=name)


def http_infer(stack, key, name, image, outputs, binary=True) -> dict:
    client = triton_http.InferenceServerClient(url=stack.gateway_url.removeprefix("http://"))
    infer_input = triton_http.InferInput("image", list(image.shape), "UINT8")
    infer_input.set_data_from_numpy(image, binary_data=binary)
    result = client.infer(name, [infer_input], headers={"Authorization": f"Bearer {key}"},
                          outputs=[triton_http.InferRequestedOutput(o, binary_data=binary) for o in outputs])
    return {o: result.as_numpy(o) for o in outputs}


def grpc_infer(stack, key, name, image, outputs) -> dict:
    client = triton_grpc.InferenceServerClient(url=f"127.0.0.1:{stack.gateway_grpc_port}")
    infer_input = triton_grpc.InferInput("image", list(image.shape), "UINT8")
    infer_input.set_data_from_numpy(image)
    result = client.infer(name, [infer_input], headers={"authorization": f"Bearer {key}"},
                          outputs=[triton_grpc.InferRequestedOutput(o) for o in outputs])
    return {o: result.as_numpy(o) for o in outputs}


def deployed(tenant, spec, name: str, executor: str) -> Deployment:
    graph = graph_create(tenant=tenant, name=name)
    version = graph_version_create(tenant=tenant, graph_id=graph.pk, spec=spec, message="v1")
    deployment = deployment_create(tenant=tenant, graph_version_id=version.pk, name=name, executor=executor)
    ready = wait_for_state(deployment.pk, {DeploymentState.READY, DeploymentState.FAILED})
    assert ready.state == DeploymentState.READY, ready.error
    assert ready.executor == executor
    return ready


def loaded_models(stack) -> set[str]:
    return {m["name"] for m in triton.repository_index(stack.triton_url) if m.get("state") == "READY"}


def graph_calls_rated_like_model_calls(tenant, events, deployments) -> None:
    """Rolled and rated like a model's calls: per graph deployment, a request each (per
    1,000) and the compute of its steps (each event's compute_ms) in seconds."""
    first = min(e.occurred_at for e in events)
    tenant.plan = plan_with_prices("graph-billing", effective_from=first - timedelta(days=40))
    tenant.save(update_fields=["plan"])
    for hour in {hour_start(e.occurred_at) for e in events}:
        usage_rollup_hour(hour=hour)
    lines = [line for month in {month_start(e.occurred_at) for e in events}
             for line in month_rating(tenant=tenant, period_start=month).lines]
    for deployment in deployments:
        calls = [e for e in events if e.deployment_id == deployment.pk and e.status == 200 and e.endpoint == "infer"]
        assert calls and all(e.compute_ms > 0 for e in calls)
        compute = f"compute_{deployment.hardware}"
        quantities = {component: sum((line.quantity for line in lines
                                      if line.deployment_id == deployment.pk and line.component == component),
                                     Decimal(0))
                      for component in ("requests", compute)}
        assert quantities == {
            "requests": Decimal(len(calls)) / 1000,
            compute: sum((Decimal(str(e.compute_ms)).quantize(Decimal("1e-6")) for e in calls), Decimal(0)) / 1000,
        }, deployment.name


@pytest.fixture
def models(acme, digits_onnx):
    classifier = model_version_upload(tenant=acme, model_name="digits", chunks=[digits_onnx])
    fallback = model_version_upload(tenant=acme, model_name="digits-fallback",
                                    chunks=[digits_fallback_classifier_onnx()])
    return classifier, fallback


def test_an_ensemble_and_an_orchestrator_share_a_step_and_answer_like_the_fused_graph(stack, acme, globex, models):
    classifier, fallback = models
    plain_spec = graph_without_switch_spec(classifier.pk)
    switch = switch_spec(classifier.pk, fallback.pk, threshold=0.99)  # row 5 of images(8) is unsure
    ensemble = deployed(acme, plain_spec, "plain", Executor.ENSEMBLE)
    orchestrated = deployed(acme, switch, "switched", Executor.BLS)
    _, key = api_key_create(tenant=acme, label="client", scopes=["infer"])

    # The classifier is one Triton model that both graphs hold.
    holds = UnitHold.objects.filter(triton_name__contains=f"--mv{classifier.pk}--")
    assert sorted(holds.values_list("deployment_id", flat=True)) == sorted([ensemble.pk, orchestrated.pk])
    assert len(set(holds.values_list("triton_name", flat=True))) == 1
    shared = holds.first().triton_name
    assert {shared, ensemble.triton_name, orchestrated.triton_name} <= loaded_models(stack)

    image = images(8)  # some rows below the threshold, so the fallback answers for this batch
    for_plain, for_switch = fused_answers(acme, plain_spec, image), fused_answers(acme, switch, image)
    assert_equal(http_infer(stack, key, "plain", image, ["label", "name", "score"]), for_plain)
    assert_equal(http_infer(stack, key, "plain", image, ["label", "name", "score"], binary=False), for_plain)
    assert_equal(grpc_infer(stack, key, "plain", image, ["label", "name", "score"]), for_plain)
    assert_equal(http_infer(stack, key, "switched", image, ["label", "name", "score"]), for_switch)
    assert_equal(grpc_infer(stack, key, "switched", image, ["label", "name", "score"]), for_switch)
    sure = images(1)  # one confident row: the fallback branch gets no rows and is not called
    assert_equal(http_infer(stack, key, "switched", sure, ["label", "name", "score"]),
                 fused_answers(acme, switch, sure))

    wait_usage(acme, 6)
    time.sleep(1)  # one usage event per graph call, not one per step
    events = list(UsageEvent.objects.for_tenant(acme))
    assert sorted(e.deployment_name for e in events) == ["plain"] * 3 + ["switched"] * 3
    graph_calls_rated_like_model_calls(acme, events, [ensemble, orchestrated])

    status = key_client(acme).get(f"/api/v1/deployments/{orchestrated.pk}/nodes")
    assert status.status_code == 200, status.content
    body = status.json()
    units = {u["name"]: u for u in body["units"]}
    assert body["executor"] == "bls" and all(u["state"] == "loaded" for u in body["units"])
    assert units["clf"]["shared"] and units["clf"]["calls"] >= 6  # both graphs' calls
    assert units["fb"]["calls"] == 2 and not units["fb"]["shared"]  # the two unsure batches, not the sure one
    assert units["orchestrator"]["calls"] == 3 and units["orchestrator"]["p50_ms"] > 0
    assert body["nodes"]["prep"] == {"unit": "prep+flat", "state": "loaded", "fused": True}
    assert key_client(globex).get(f"/api/v1/deployments/{orchestrated.pk}/nodes").status_code == 404

    # Two instances for the ensemble's topk: its unit (held by the ensemble alone) is reloaded
    # with them, then the ensemble; the shared classifier keeps its one instance.
    top = unit_triton_name(ensemble, next(u for u in deployment_plan(ensemble).units if u.nodes == ["top"]))
    assert triton.model_instances(stack.triton_url, top) == 1
    deployment_settings_update(tenant=acme, deployment_id=ensemble.pk, max_instances=2, node_instances={"top": 2})
    wait(lambda: triton.model_instances(stack.triton_url, top), 60, "topk's unit to take 2 instances",
         until=lambda count: count == 2)
    wait(lambda: ensemble.triton_name in loaded_models(stack), 60, "the ensemble to be loaded again",
         until=bool)
    assert triton.model_instances(stack.triton_url, shared) == 1
    assert_equal(http_infer(stack, key, "plain", image, ["label", "name", "score"]), for_plain)

    # The ensemble goes; the classifier stays for the orchestrator, which still answers.
    deployment_undeploy(tenant=acme, deployment_id=ensemble.pk)
    wait_for_state(ensemble.pk, {DeploymentState.UNDEPLOYED}, timeout=30)
    assert shared in loaded_models(stack) and ensemble.triton_name not in loaded_models(stack)
    assert_equal(http_infer(stack, key, "switched", image, ["label", "name", "score"]), for_switch)

    # Scaled to zero, the orchestrator lets go of every unit; a call wakes it and them.
    deployment_scale_to_zero(tenant=acme, deployment_id=orchestrated.pk)
    wait_for_state(orchestrated.pk, {DeploymentState.COLD}, timeout=30)
    assert not UnitHold.objects.exists()
    assert not {n for n in loaded_models(stack) if n.startswith(f"t{acme.pk}--")}
    body = json.dumps({"inputs": [{"name": "image", "shape": list(image.shape), "datatype": "UINT8",
                                   "data": image.ravel().tolist()}]}).encode()
    status_code, _, answer = call(stack, "/v2/models/switched/infer", key=key, body=body)
    assert status_code == 200, answer
    names = {o["name"]: o["data"] for o in json.loads(answer)["outputs"]}["name"]
    assert names == [v.decode() if isinstance(v, bytes) else v for v in for_switch["name"].ravel()]
    woken = Deployment.unscoped.get(pk=orchestrated.pk)
    assert woken.state == DeploymentState.READY and shared in loaded_models(stack)

    deployment_undeploy(tenant=acme, deployment_id=orchestrated.pk)
    wait_for_state(orchestrated.pk, {DeploymentState.UNDEPLOYED}, timeout=30)
    assert shared not in loaded_models(stack) and not UnitHold.objects.exists()
    assert not woken.compiled_dir.exists()
