import json
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as triton_http
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from gateway.contract.errors import Conflict, NotFound, PlatformError
from gateway.contract.keys import route_entry_name
from graph_editor.services import model_version_upload
from tenants.directory import redis_client
from tests.tenants.test_api_quotas import standard  # noqa: F401
from workers.models import Deployment, DeploymentState, TritonServer
from workers.services import deployment_create, deployment_undeploy
from workers.triton.repository import config_pbtxt

DIGITS_INPUTS = [{"name": "X", "datatype": "FP32", "shape": [-1, 64]}]
DIGITS_OUTPUTS = [
    {"name": "label", "datatype": "INT64", "shape": [-1]},
    {"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]},
]


def parsed(text: str) -> mc.ModelConfig:
    """config.pbtxt read back the way Triton reads it."""
    return text_format.Parse(text, mc.ModelConfig())


def test_config_for_a_batched_model_enables_dynamic_batching_and_exposes_scalars_as_one():
    config = parsed(config_pbtxt(triton_name="t1--digits--d1", inputs=DIGITS_INPUTS, outputs=DIGITS_OUTPUTS,
                                 has_batch_dim=True, native_onnx=False, gpu=False, memory_limit_mb=512))
    assert config.name == "t1--digits--d1"
    assert config.backend == "python"
    assert config.max_batch_size == 64
    assert config.dynamic_batching.max_queue_delay_microseconds == 500
    assert [(i.name, i.data_type, list(i.dims)) for i in config.input] == [("X", mc.TYPE_FP32, [64])]
    label = config.output[0]
    assert (label.name, label.data_type, list(label.dims)) == ("label", mc.TYPE_INT64, [1])
    assert label.HasField("reshape") and list(label.reshape.shape) == []
    assert config.instance_group[0].kind == mc.ModelInstanceGroup.KIND_CPU
    assert config.parameters["memory_limit_mb"].string_value == "512"


def test_config_without_batch_dimension_keeps_full_shapes_and_native_backend_on_gpu():
    config = parsed(config_pbtxt(
        triton_name="m", inputs=[{"name": "x", "datatype": "FP16", "shape": [3, -1]}],
        outputs=[{"name": "y", "datatype": "BYTES", "shape": [3]}], has_batch_dim=False, native_onnx=True, gpu=True,
    ))
    assert config.max_batch_size == 0
    assert not config.HasField("dynamic_batching")
    assert list(config.input[0].dims) == [3, -1] and config.output[0].data_type == mc.TYPE_STRING
    assert config.backend == "onnxruntime" and config.instance_group[0].kind == mc.ModelInstanceGroup.KIND_GPU
    assert config.default_model_filename == "model.onnx"


@pytest.mark.parametrize("hostile", [
    'X" data_type: TYPE_STRING } input { name: "Y',
    "X\n}\ninput [ { name: \"Y\" dims: [ 1 ] } ]",
    "X\\\" \u00e9 \x00 end",
])
def test_config_text_carries_any_string_as_one_value(hostile):
    """Even a name the upload would refuse cannot add or change a field of the config."""
    text = config_pbtxt(triton_name="t1--m--d1", inputs=[{"name": hostile, "datatype": "FP32", "shape": [-1, 4]}],
                        outputs=[{"name": "y", "datatype": "FP32", "shape": [-1, 4]}], has_batch_dim=True,
                        native_onnx=False, gpu=False)
    config = parsed(text)
    assert len(config.input) == 1 and len(config.output) == 1
    assert config.input[0].name == hostile and config.input[0].data_type == mc.TYPE_FP32


def wait_for_state(deployment_id: int, states: set[str], timeout: float = 60.0) -> Deployment:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        deployment = Deployment.unscoped.prefetch_related("replica_set__server").get(pk=deployment_id)
        if deployment.state in states:
            return deployment
        time.sleep(0.2)
    raise AssertionError(f"deployment {deployment_id} stuck in {deployment.state}: {deployment.error}")


@pytest.mark.integration
def test_deploy_loads_into_triton_and_answers_like_onnxruntime(stack, acme, digits_onnx):
    version = model_version_upload(tenant=acme, model_name="digits", chunks=[digits_onnx])
    deployment = deployment_create(tenant=acme, model_version_id=version.pk)
    assert deployment.state == DeploymentState.PENDING
    ready = wait_for_state(deployment.pk, {DeploymentState.READY, DeploymentState.FAILED})
    assert ready.state == DeploymentState.READY, ready.error
    assert ready.load_seconds > 0
    assert (stack.triton_repository / ready.triton_name / "config.pbtxt").exists()
    # The worker publishes the route right after its commit: a moment after the row reads ready.
    deadline = time.monotonic() + 5
    while (route := redis_client().hgetall(route_entry_name(acme.pk, "digits")))["state"] != "ready":
        assert time.monotonic() < deadline, route
        time.sleep(0.05)
    assert route["triton_model"] == ready.triton_name and route["http_url"] == stack.triton_url
    assert json.loads(route["sig"])["in"] == [["X", "FP32", [-1, 64]]]

    from graph_editor.samples import digits_dataset

    features = digits_dataset()[0][:5]
    client = triton_http.InferenceServerClient(url=stack.triton_url.removeprefix("http://"))
    infer_input = triton_http.InferInput("X", list(features.shape), "FP32")
    infer_input.set_data_from_numpy(features)
    result = client.infer(ready.triton_name, [infer_input])
    expected_label, expected_probabilities = ort.InferenceSession(digits_onnx).run(None, {"X": features})
    np.testing.assert_array_equal(result.as_numpy("label").reshape(-1), expected_label)
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected_probabilities, rtol=1e-5)

    with pytest.raises(Conflict):
        deployment_create(tenant=acme, model_version_id=version.pk)

    deployment_undeploy(tenant=acme, deployment_id=deployment.pk)
    gone = wait_for_state(deployment.pk, {DeploymentState.UNDEPLOYED})
    assert not (stack.triton_repository / gone.triton_name).exists()
    assert not client.is_model_ready(gone.triton_name)
    assert redis_client().exists(route_entry_name(acme.pk, "digits")) == 0
    # The name is free again once undeployed.
    again = deployment_create(tenant=acme, model_version_id=version.pk)
    assert wait_for_state(again.pk, {DeploymentState.READY, DeploymentState.FAILED}).state == DeploymentState.READY


@pytest.mark.integration
def test_a_model_triton_cannot_load_fails_with_its_reason_and_leaves_nothing(stack, acme, digits_onnx, settings):
    version = model_version_upload(tenant=acme, model_name="digits", chunks=[digits_onnx])
    # Corrupt the stored file behind the platform's back: Triton's runner must fail to load it.
    Path(version.absolute_path).write_bytes(b"corrupted")
    deployment = deployment_create(tenant=acme, model_version_id=version.pk)
    failed = wait_for_state(deployment.pk, {DeploymentState.READY, DeploymentState.FAILED})
    assert failed.state == DeploymentState.FAILED
    assert "Triton could not load the model" in failed.error
    assert not (stack.triton_repository / failed.triton_name).exists()
    index = triton_http.InferenceServerClient(url=stack.triton_url.removeprefix("http://")).get_model_repository_index()
    assert failed.triton_name not in {m["name"] for m in index if m.get("state") == "READY"}
    route = redis_client().hgetall(route_entry_name(acme.pk, "digits"))
    assert route["state"] == "failed" and "could not load" in route["error"]


@pytest.mark.integration
def test_without_a_reachable_server_the_deployment_waits_then_loads_when_one_appears(stack, acme, digits_onnx):
    TritonServer.objects.update(healthy=False)
    version = model_version_upload(tenant=acme, model_name="digits", chunks=[digits_onnx])
    deployment = deployment_create(tenant=acme, model_version_id=version.pk)
    deadline = time.monotonic() + 10
    while "No healthy Triton server" not in Deployment.unscoped.get(pk=deployment.pk).error:
        assert time.monotonic() < deadline, "the deployment never said why it waits"
        time.sleep(0.2)
    assert Deployment.unscoped.get(pk=deployment.pk).state == DeploymentState.PENDING
    assert redis_client().hget(route_entry_name(acme.pk, "digits"), "state") == "pending"
    TritonServer.objects.update(healthy=True)  # what the health check does when a server comes up
    ready = wait_for_state(deployment.pk, {DeploymentState.READY, DeploymentState.FAILED})
    assert ready.state == DeploymentState.READY and ready.error == ""


def test_the_last_attempt_fails_with_an_actionable_reason(db, acme, digits_onnx):
    from workers.services import deployment_load_run

    TritonServer.objects.all().delete()
    version = model_version_upload(tenant=acme, model_name="digits", chunks=[digits_onnx])
    deployment = Deployment.unscoped.create(tenant=acme, name="digits", model_version=version)
    deployment_load_run(deployment_id=deployment.pk, final_attempt=True)
    failed = Deployment.unscoped.get(pk=deployment.pk)
    assert failed.state == DeploymentState.FAILED and "No healthy Triton server" in failed.error


@pytest.mark.django_db
def test_deploying_another_tenants_version_is_not_found(acme, globex, digits_onnx):
    version = model_version_upload(tenant=acme, model_name="digits", chunks=[digits_onnx])
    with pytest.raises(NotFound):
        deployment_create(tenant=globex, model_version_id=version.pk)
    with pytest.raises(NotFound):
        deployment_undeploy(tenant=globex, deployment_id=12345)
    assert not Deployment.objects.for_tenant(globex).exists()


@pytest.mark.django_db
@pytest.mark.parametrize("choices, code, message", [
    ({"instances": True}, "invalid_instances", "instances must be a whole number from 1 to 32767."),
    ({"max_batch_size": True}, "invalid_batch_size", "max_batch_size must be a whole number from 0 to 2147483647."),
    # Beyond the columns, and beyond the plan's limits too: a bad request, not a quota refusal.
    ({"instances": 40000}, "invalid_instances", "instances must be a whole number from 1 to 32767."),
    ({"max_batch_size": 2**31}, "invalid_batch_size", "max_batch_size must be a whole number from 0 to 2147483647."),
    ({"min_instances": 3, "max_instances": 2}, "invalid_instances",
     "min_instances (3) cannot exceed max_instances (2)."),
    ({"keepalive": "sometimes"}, "invalid_keepalive",
     "Unknown keep-alive policy 'sometimes': choose adaptive or fixed."),
    ({"preferred_batch_sizes": [8, 128]}, "invalid_batch_size",
     "Each preferred batch size must be between 1 and max_batch_size (64)."),
    ({"replicas": 0}, "invalid_replicas", "replicas must be a whole number from 1 to 16."),
])
def test_settings_a_deployment_cannot_have_are_a_platform_error(acme, standard, digits_onnx,  # noqa: F811
                                                                 choices, code, message):
    version = model_version_upload(tenant=acme, model_name="digits", chunks=[digits_onnx])
    with pytest.raises(PlatformError) as refused:
        deployment_create(tenant=acme, model_version_id=version.pk, **choices)
    assert (refused.value.status, refused.value.code, refused.value.message) == (400, code, message)
    assert not Deployment.objects.for_tenant(acme).exists()
