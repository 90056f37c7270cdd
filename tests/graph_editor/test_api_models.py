"""Models and versions through the REST API: upload, list, versions, delete, and every
kind of bad upload (each gets a clear error and leaves no file and no row)."""
import hashlib
import random

import pytest
from onnx import TensorProto, helper

from graph_editor.models import MLModel, ModelVersion
from tests.api_helpers import files_under, key_client, owner_client, upload_model

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def storage(settings, tmp_path):
    settings.MODEL_STORAGE_DIR = tmp_path / "models"
    return settings.MODEL_STORAGE_DIR


def onnx_bytes(nodes, inputs, outputs, initializers=(), opsets=(("", 17),)) -> bytes:
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets])
    return model.SerializeToString()


def tensor(name: str, dtype=TensorProto.FLOAT, shape=(None, 4)):
    return helper.make_tensor_value_info(name, dtype, list(shape))


def identity_model(dtype) -> bytes:
    return onnx_bytes([helper.make_node("Identity", ["x"], ["y"])], [tensor("x", dtype, [2])],
                      [tensor("y", dtype, [2])])


def external_data_model(location: str) -> bytes:
    weights = helper.make_tensor("w", TensorProto.FLOAT, [4], [1.0, 2.0, 3.0, 4.0])
    weights.ClearField("float_data")
    weights.data_location = TensorProto.EXTERNAL
    weights.external_data.add(key="location", value=location)
    return onnx_bytes([helper.make_node("Add", ["x", "w"], ["y"])], [tensor("x")], [tensor("y")], [weights])


def unsorted_graph_model() -> bytes:
    # Relu reads a tensor nothing produces: the ONNX checker refuses the graph.
    return onnx_bytes([helper.make_node("Relu", ["missing"], ["y"])], [tensor("x")], [tensor("y")])


def test_the_supported_datatypes_exclude_complex_and_bfloat16():
    from graph_editor.onnx_inspect import ONNX_TO_KSERVE

    assert not {TensorProto.COMPLEX64, TensorProto.COMPLEX128, TensorProto.BFLOAT16} & set(ONNX_TO_KSERVE)


@pytest.mark.parametrize("auth", ["key", "session"])
def test_uploads_become_numbered_versions_with_their_signature(acme, alice, digits_onnx, storage, auth):
    client = owner_client(auth, acme, alice)
    response = upload_model(client, "digits", digits_onnx, "digits.onnx", description="8x8 digits")
    assert response.status_code == 201, response.json()
    first = response.json()
    assert first["version"] == 1 and first["model_name"] == "digits" and first["format"] == "onnx"
    assert first["inputs"] == [{"name": "X", "datatype": "FP32", "shape": [-1, 64]}]
    assert first["outputs"] == [{"name": "label", "datatype": "INT64", "shape": [-1]},
                                {"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]}]
    assert first["has_batch_dim"] is True and first["opset"] == 17
    assert first["size_bytes"] == len(digits_onnx)
    assert first["sha256"] == hashlib.sha256(digits_onnx).hexdigest()
    assert ModelVersion.objects.for_tenant(acme).get(pk=first["id"]).absolute_path.read_bytes() == digits_onnx

    second = upload_model(client, "digits", digits_onnx).json()
    assert second["version"] == 2 and second["model"] == first["model"]
    assert len(files_under(storage)) == 2

    [listed] = client.get("/api/v1/models").json()
    assert listed["name"] == "digits" and listed["description"] == "8x8 digits"
    assert listed["latest_version"] == second
    detail = client.get(f"/api/v1/models/{listed['id']}").json()
    assert detail["versions"] == [second, first]
    assert client.get(f"/api/v1/models/{listed['id']}/versions").json() == [second, first]
    assert client.get(f"/api/v1/versions/{first['id']}").json() == first


def test_a_model_without_versions_lists_none_as_its_latest(acme, globex, digits_onnx):
    upload_model(key_client(acme), "digits", digits_onnx)
    assert key_client(globex).get("/api/v1/models").json() == []
    assert key_client(acme).get("/api/v1/models").json()[0]["latest_version"]["version"] == 1


BOUNDARY = "platform-test-boundary"


def multipart(fields: dict) -> bytes:
    """A multipart/form-data body written by hand: Django's test client would strip a
    path from the file name before sending it."""
    parts = []
    for name, value in fields.items():
        if isinstance(value, tuple):
            filename, content = value
            head = (f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                    "Content-Type: application/octet-stream")
        else:
            head, content = f'Content-Disposition: form-data; name="{name}"', value.encode()
        parts.append(f"--{BOUNDARY}\r\n{head}\r\n\r\n".encode() + content + b"\r\n")
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


BAD_UPLOADS = [
    # (case, form fields, file name, file content, status, code, message fragment)
    ("no file", {"name": "digits"}, None, None, 400, "invalid_request",
     "Attach the ONNX file as the multipart field 'file'."),
    ("no name", {}, "m.onnx", "digits", 400, "invalid_request", "Give the model a 'name'"),
    ("file as text", {"name": "digits", "file": "model.onnx"}, None, None, 400, "invalid_request",
     "'file' must be a file part"),
    ("random bytes", {"name": "junk"}, "junk.onnx", random.Random(7).randbytes(4096), 400, "invalid_model",
     "The file is not a valid ONNX model"),
    ("empty file", {"name": "empty"}, "empty.onnx", b"", 400, "invalid_model", "The uploaded file is empty."),
    ("too large", {"name": "digits"}, "m.onnx", "digits", 413, "file_too_large",
     "The file is larger than the 2,048 bytes upload limit."),
    ("external data escaping", {"name": "ext"}, "m.onnx", external_data_model("../../etc/passwd"), 400,
     "external_data", "references external data file '../../etc/passwd'"),
    ("external data beside", {"name": "ext"}, "m.onnx", external_data_model("weights.bin"), 400,
     "external_data", "Upload a self-contained model"),
    ("path in file name", {"name": "digits"}, "../evil.onnx", "digits", 400, "path_traversal",
     "Rejected file name '../evil.onnx': it contains a path."),
    ("windows path in file name", {"name": "digits"}, "..\\evil.onnx", "digits", 400, "path_traversal",
     "it contains a path"),
    ("complex64 input", {"name": "cplx"}, "m.onnx", identity_model(TensorProto.COMPLEX64), 400, "invalid_model",
     "Input 'x' has unsupported data type COMPLEX64; supported: BOOL, DOUBLE, FLOAT"),
    ("bfloat16 input", {"name": "bf16"}, "m.onnx", identity_model(TensorProto.BFLOAT16), 400, "invalid_model",
     "unsupported data type BFLOAT16"),
    ("string input", {"name": "text"}, "m.onnx", identity_model(TensorProto.STRING), 400, "invalid_model",
     "string inputs are not supported"),
    ("checker failure", {"name": "broken"}, "m.onnx", unsorted_graph_model(), 400, "invalid_model",
     "The ONNX checker rejected the model"),
    ("invalid name", {"name": "Bad Name!"}, "m.onnx", "digits", 400, "invalid_name",
     "Invalid model name 'Bad Name!': use 1-63 lowercase letters, digits and hyphens."),
    ("name too long", {"name": "a" * 64}, "m.onnx", "digits", 400, "invalid_name", "Invalid model name"),
]


@pytest.mark.parametrize("case, fields, filename, content, status, code, message", BAD_UPLOADS,
                         ids=[c[0] for c in BAD_UPLOADS])
def test_a_bad_upload_gets_a_clear_error_and_leaves_nothing(acme, digits_onnx, storage, settings, case, fields,
                                                            filename, content, status, code, message):
    settings.MODEL_UPLOAD_MAX_BYTES = 2048 if case == "too large" else settings.MODEL_UPLOAD_MAX_BYTES
    form = dict(fields)
    if filename is not None:
        form["file"] = (filename, digits_onnx if content == "digits" else content)
    response = key_client(acme).post("/api/v1/models", multipart(form), content_type=f"multipart/form-data; "
                                     f"boundary={BOUNDARY}")
    assert response.status_code == status, response.json()
    assert response.json()["error"]["code"] == code
    assert message in response.json()["error"]["message"]
    assert files_under(storage) == []
    assert not MLModel.unscoped.exists() and not ModelVersion.unscoped.exists()


def test_a_json_upload_is_told_to_use_multipart(acme):
    response = key_client(acme).post("/api/v1/models", {"name": "digits"}, format="json")
    assert response.status_code == 415
    assert 'Unsupported media type "application/json"' in response.json()["error"]["message"]


def test_a_bad_second_version_leaves_the_first_as_it_was(acme, digits_onnx, storage):
    client = key_client(acme)
    first = upload_model(client, "digits", digits_onnx, description="v1").json()
    response = upload_model(client, "digits", b"not onnx", description="changed")
    assert response.status_code == 400
    assert files_under(storage) == [ModelVersion.objects.for_tenant(acme).get(pk=first["id"]).absolute_path]
    [model] = client.get("/api/v1/models").json()
    assert model["description"] == "v1" and model["latest_version"]["version"] == 1


def test_versions_are_immutable(acme, digits_onnx):
    upload_model(key_client(acme), "digits", digits_onnx)
    version = ModelVersion.objects.for_tenant(acme).get()
    version.sha256 = "0" * 64
    with pytest.raises(ValueError, match="immutable"):
        version.save()
    client = key_client(acme)
    for method in ("put", "patch"):
        response = getattr(client, method)(f"/api/v1/versions/{version.pk}", {"sha256": "0" * 64}, format="json")
        assert response.status_code == 405
        assert response.json()["error"]["code"] == "method_not_allowed"
    assert ModelVersion.objects.for_tenant(acme).get().sha256 == hashlib.sha256(digits_onnx).hexdigest()


@pytest.mark.parametrize("auth", ["key", "session"])
def test_deleting_a_model_removes_its_versions_and_files(acme, alice, digits_onnx, storage, auth,
                                                         django_capture_on_commit_callbacks):
    client = owner_client(auth, acme, alice)
    model_id = upload_model(client, "digits", digits_onnx).json()["model"]
    upload_model(client, "digits", digits_onnx)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.delete(f"/api/v1/models/{model_id}")
    assert response.status_code == 204
    assert client.get(f"/api/v1/models/{model_id}").status_code == 404
    assert client.get("/api/v1/models").json() == []
    assert files_under(storage) == [] and not ModelVersion.unscoped.exists()


def test_a_deployed_model_cannot_be_deleted(acme, digits_onnx, storage):
    client = key_client(acme)
    version = upload_model(client, "digits", digits_onnx).json()
    assert client.post("/api/v1/deployments", {"model_version": version["id"]}, format="json").status_code == 202
    response = client.delete(f"/api/v1/models/{version['model']}")
    assert response.status_code == 409
    assert response.json() == {"error": {"code": "conflict",
                                          "message": "This model has active deployments; undeploy them first."}}
    assert client.get(f"/api/v1/models/{version['model']}").status_code == 200
    assert len(files_under(storage)) == 1

