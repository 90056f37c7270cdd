import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from gateway.contract.errors import PlatformError
from graph_editor.models import MLModel, ModelVersion
from graph_editor.services import model_version_upload


def add_model(dtype=TensorProto.FLOAT, batch=True) -> bytes:
    dim0 = "N" if batch else 3
    x = helper.make_tensor_value_info("x", dtype, [dim0, 4])
    y = helper.make_tensor_value_info("y", dtype, [dim0, 4])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def external_data_model(location: str) -> bytes:
    weights = helper.make_tensor("w", TensorProto.FLOAT, [4], vals=np.ones(4, dtype=np.float32).tobytes(), raw=True)
    weights.ClearField("raw_data")
    weights.data_location = TensorProto.EXTERNAL
    weights.external_data.add(key="location", value=location)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g", [x], [y], initializer=[weights])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def checker_failing_model() -> bytes:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])
    graph = helper.make_graph([helper.make_node("NoSuchOperator", ["x"], ["y"])], "g", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def stored_files(settings):
    return [p for p in settings.MODEL_STORAGE_DIR.rglob("*") if p.is_file()]


@pytest.fixture(autouse=True)
def storage(settings, tmp_path):
    settings.MODEL_STORAGE_DIR = tmp_path / "models"


@pytest.mark.django_db
def test_upload_extracts_the_signature_and_versions_are_numbered(acme, digits_onnx, settings):
    first = model_version_upload(tenant=acme, model_name="digits", chunks=[digits_onnx], filename="digits.onnx")
    assert first.version == 1
    assert first.inputs == [{"name": "X", "datatype": "FP32", "shape": [-1, 64]}]
    assert [o["name"] for o in first.outputs] == ["label", "probabilities"]
    assert first.outputs[1] == {"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]}
    assert first.has_batch_dim is True
    assert first.absolute_path.read_bytes() == digits_onnx
    second = model_version_upload(tenant=acme, model_name="digits", chunks=[add_model()])
    assert second.version == 2 and second.model_id == first.model_id
    assert len(stored_files(settings)) == 2


@pytest.mark.django_db
def test_versions_are_immutable(acme, digits_onnx):
    version = model_version_upload(tenant=acme, model_name="digits", chunks=[digits_onnx])
    version.opset = 1
    with pytest.raises(ValueError, match="immutable"):
        version.save()


@pytest.mark.django_db
def test_model_without_leading_dynamic_dim_has_no_batch_dimension(acme):
    version = model_version_upload(tenant=acme, model_name="fixed", chunks=[add_model(batch=False)])
    assert version.has_batch_dim is False
    assert version.inputs[0]["shape"] == [3, 4]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "name, payload, filename, code, message",
    [
        ("junk", b"\x08\x01 this is not a protobuf \xff\xfe", "junk.onnx", "invalid_model", "not a valid ONNX model"),
        ("empty", b"", "empty.onnx", "invalid_model", "empty"),
        ("ext", external_data_model("weights.bin"), "ext.onnx", "external_data", "external data file 'weights.bin'"),
        ("trav", external_data_model("../../etc/passwd"), "t.onnx", "external_data", "../../etc/passwd"),
        ("bf16", add_model(TensorProto.BFLOAT16), "b.onnx", "invalid_model", "unsupported data type BFLOAT16"),
        ("cplx", add_model(TensorProto.COMPLEX64), "c.onnx", "invalid_model", "unsupported data type COMPLEX64"),
        ("badop", checker_failing_model(), "o.onnx", "invalid_model", "checker rejected"),
        ("ok", add_model(), "../evil.onnx", "path_traversal", "contains a path"),
        ("Bad Name", add_model(), "m.onnx", "invalid_name", "Invalid model name"),
    ],
)
def test_bad_uploads_are_rejected_and_leave_nothing(acme, settings, name, payload, filename, code, message):
    with pytest.raises(PlatformError) as excinfo:
        model_version_upload(tenant=acme, model_name=name, chunks=[payload], filename=filename)
    assert excinfo.value.code == code
    assert message in excinfo.value.message
    assert stored_files(settings) == []
    assert not MLModel.objects.for_tenant(acme).exists()
    assert not ModelVersion.objects.for_tenant(acme).exists()


@pytest.mark.django_db
def test_too_large_upload_is_413_and_leaves_nothing(acme, settings, digits_onnx):
    settings.MODEL_UPLOAD_MAX_BYTES = 1024
    with pytest.raises(PlatformError) as excinfo:
        model_version_upload(tenant=acme, model_name="digits", chunks=[digits_onnx[i:i + 512]
                                                                        for i in range(0, len(digits_onnx), 512)])
    assert excinfo.value.status == 413
    assert stored_files(settings) == []
    assert not MLModel.objects.for_tenant(acme).exists()


@pytest.mark.django_db
def test_same_model_name_in_two_tenants_is_independent(acme, globex, digits_onnx):
    a = model_version_upload(tenant=acme, model_name="digits", chunks=[digits_onnx])
    b = model_version_upload(tenant=globex, model_name="digits", chunks=[digits_onnx])
    assert a.model_id != b.model_id and a.version == b.version == 1
    assert list(MLModel.objects.for_tenant(globex)) == [b.model]
    assert onnx.load_from_string(b.absolute_path.read_bytes()).graph.input[0].name == "X"


def named_model(input_name: str, output_name: str = "y", shape=("N", 4)) -> bytes:
    x = helper.make_tensor_value_info(input_name, TensorProto.FLOAT, list(shape))
    y = helper.make_tensor_value_info(output_name, TensorProto.FLOAT, list(shape))
    graph = helper.make_graph([helper.make_node("Identity", [input_name], [output_name])], "g", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


@pytest.mark.parametrize("name", [
    'X"', "X\nname: \"evil\"", "x y", "-x", "x" * 129, "caf\u00e9", "x\x00", "x}", "x\\", "x'",
])
def test_tensor_names_triton_cannot_carry_are_refused_with_the_rule_and_nothing_stored(acme, settings, name):
    with pytest.raises(PlatformError) as caught:
        model_version_upload(tenant=acme, model_name="named", chunks=[named_model(name)])
    assert (caught.value.status, caught.value.code) == (400, "invalid_tensor_name")
    assert "ASCII letters, digits and the characters _ . : / -" in caught.value.message
    assert stored_files(settings) == []
    assert not MLModel.unscoped.filter(tenant=acme).exists()


@pytest.mark.parametrize("name", ["X", "input_1", "input.1", "onnx::Gemm_0", "serving_default/x:0", "0", "x" * 128])
def test_common_exporter_tensor_names_are_accepted(acme, name):
    version = model_version_upload(tenant=acme, model_name="named", chunks=[named_model(name)])
    assert version.inputs[0]["name"] == name


def test_a_name_shared_by_an_input_and_an_output_is_refused(acme, settings):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])
    graph = helper.make_graph([], "g", [x], [x])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    with pytest.raises(PlatformError) as caught:
        model_version_upload(tenant=acme, model_name="same", chunks=[model])
    assert caught.value.code == "invalid_tensor_name" and "used twice" in caught.value.message
    assert stored_files(settings) == []


@pytest.mark.parametrize("shape, message", [
    (("N", 0), "fixed dimensions must be from 1 to 2147483647"),
    (("N", -3), "fixed dimensions must be from 1 to 2147483647"),
    (("N", 2**40), "fixed dimensions must be from 1 to 2147483647"),
    (("N",) + (1,) * 32, "has rank 33; at most 32"),
])
def test_shapes_no_request_could_carry_are_refused(acme, settings, shape, message):
    with pytest.raises(PlatformError) as caught:
        model_version_upload(tenant=acme, model_name="zero", chunks=[named_model("x", shape=shape)])
    assert caught.value.code == "invalid_shape" and message in caught.value.message
    assert stored_files(settings) == []


@pytest.mark.parametrize("opset", [0, -5, 999])
def test_opsets_outside_what_the_runtime_knows_are_refused(acme, settings, opset):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"], domain="custom.ops")], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset),
                                                    helper.make_opsetid("custom.ops", 1)])
    with pytest.raises(PlatformError) as caught:
        model_version_upload(tenant=acme, model_name="opset", chunks=[model.SerializeToString()])
    assert caught.value.status == 400 and caught.value.code in ("invalid_opset", "invalid_model")
    assert stored_files(settings) == []
