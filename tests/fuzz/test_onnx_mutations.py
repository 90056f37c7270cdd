"""Mutated ONNX uploads, through the real upload service and the REST endpoint.

The digits sample and tiny models built with onnx.helper are mutated at the byte level
(flips, truncation, insertions) and at the protobuf level (wrong or unknown datatypes,
missing shapes, zero, negative and huge dims, bogus opsets and IR versions, tensor names
with quotes, newlines, control or non-ASCII characters or thousands of characters,
external data references, duplicate names, no graph). Whatever comes in, the upload
either stores a version whose signature is consistent with the file, or refuses it with
a PlatformError (a 4xx with a message over REST) and leaves nothing behind: no file under
MODEL_STORAGE_DIR (its .incoming spool included), no model or version row."""
import hashlib
import re
import shutil

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from hypothesis import event, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from onnx import ModelProto, TensorProto, helper

from gateway.contract.errors import PlatformError
from graph_editor.models import MLModel, ModelVersion
from graph_editor.onnx_inspect import ONNX_TO_KSERVE, inspect_onnx
from graph_editor.samples import digits_classifier_onnx
from graph_editor.services import model_version_upload
from tests.api_helpers import files_under, key_client

pytestmark = pytest.mark.django_db

# Upload checks are cheap next to an API call: the service campaigns run five times the
# profile's examples.
BUDGET = hypothesis_settings.default.max_examples * 5
KSERVE_TYPES = set(ONNX_TO_KSERVE.values())
# What Triton's generated config.pbtxt, the gateway's directory and the clients cannot carry as is.
UNSAFE_IN_NAMES = re.compile(r"[\x00-\x1f\x7f\"'\\]")


# ---- models to start from ---------------------------------------------------------------

def _identity() -> bytes:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "identity", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def _add_weights() -> bytes:
    """Two inputs, an initializer and two outputs, one of them without a batch dimension."""
    weights = helper.make_tensor("w", TensorProto.FLOAT, [4], [1.0, 2.0, 3.0, 4.0])
    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", 4])
    b = helper.make_tensor_value_info("b", TensorProto.INT64, [2, 3])
    total = helper.make_tensor_value_info("total", TensorProto.FLOAT, ["N", 4])
    same = helper.make_tensor_value_info("same", TensorProto.INT64, [2, 3])
    nodes = [helper.make_node("Add", ["a", "w"], ["total"]), helper.make_node("Identity", ["b"], ["same"])]
    graph = helper.make_graph(nodes, "add", [a, b], [total, same], initializer=[weights])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                             producer_name="fuzz").SerializeToString()


def _custom_domain(*, default_opset: int = 17, producer: str = "") -> bytes:
    """Only a custom-domain node: the checker then never looks the default opset up."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])
    graph = helper.make_graph([helper.make_node("Frobnicate", ["x"], ["y"], domain="com.example")], "custom", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", default_opset),
                                                   helper.make_opsetid("com.example", 1)],
                             producer_name=producer).SerializeToString()


BASES = {"digits": digits_classifier_onnx, "identity": _identity, "add_weights": _add_weights,
         "custom_domain": _custom_domain}


# ---- mutations --------------------------------------------------------------------------

NASTY_NAMES = st.one_of(
    st.sampled_from(['x"y', "x'y", "x\ny", "x\r\ny", "x\ty", "x\x00y", "x\\y", "x}y{", "ünïcode", "名前", "", " ",
                     "a" * 129, "a" * 10_000, "input__0", "x.y:z/w-1", "INPUT", "-leading", "..", "x" * 128]),
    st.text(min_size=1, max_size=40),
)
DTYPES = st.one_of(st.sampled_from(sorted(TensorProto.DataType.values())), st.integers(-3, 64))
DIMS = st.one_of(st.sampled_from([0, -1, -2, 1, 2**31 - 1, 2**31, 2**53 + 1, 2**62, 2**63 - 1, -(2**63)]),
                 st.integers(-(2**63), 2**63 - 1))
OPSETS = st.one_of(st.sampled_from([0, 1, 6, 7, 17, 21, 28, 29, 999, 2**31 - 1, 2**31, 2**62, -1]),
                   st.integers(-(2**63), 2**63 - 1))


def _value_infos(model: ModelProto) -> list:
    return [*model.graph.input, *model.graph.output]


def _rename(model: ModelProto, old: str, new: str) -> None:
    for value in [*_value_infos(model), *model.graph.initializer, *model.graph.value_info]:
        if value.name == old:
            value.name = new
    for node in model.graph.node:
        node.input[:] = [new if name == old else name for name in node.input]
        node.output[:] = [new if name == old else name for name in node.output]


def _mutate(model: ModelProto, draw) -> str:
    """One protobuf-level mutation, drawn with an st.composite's `draw`; returns its kind."""
    values = _value_infos(model)
    target = draw(st.sampled_from(values), label="tensor") if values else None
    kind = draw(st.sampled_from(["dtype", "no_shape", "dim", "rank", "opset", "ir_version", "rename",
                                      "rename_loose", "external", "duplicate", "producer", "drop", "not_tensor",
                                      "opset_domain"]), label="mutation")
    if kind == "dtype" and target is not None:
        target.type.tensor_type.elem_type = draw(DTYPES, label="dtype")
    elif kind == "no_shape" and target is not None:
        target.type.tensor_type.ClearField("shape")
    elif kind == "dim" and target is not None and target.type.tensor_type.shape.dim:
        dims = target.type.tensor_type.shape.dim
        dim = dims[draw(st.integers(0, len(dims) - 1), label="axis")]
        if draw(st.booleans(), label="symbolic"):
            dim.dim_param = draw(NASTY_NAMES, label="dim_param")
        else:
            dim.dim_value = draw(DIMS, label="dim_value")
    elif kind == "rank" and target is not None:
        shape = target.type.tensor_type.shape
        shape.ClearField("dim")
        for _ in range(draw(st.sampled_from([0, 1, 9, 64, 300]), label="rank")):
            shape.dim.add().dim_value = 1
    elif kind == "opset" and model.opset_import:
        model.opset_import[0].version = draw(OPSETS, label="opset")
    elif kind == "opset_domain":
        if draw(st.booleans(), label="clear"):
            model.ClearField("opset_import")
        else:
            model.opset_import.add(domain=draw(NASTY_NAMES, label="domain"), version=draw(OPSETS))
    elif kind == "ir_version":
        model.ir_version = draw(st.integers(-(2**63), 2**63 - 1), label="ir_version")
    elif kind == "rename" and target is not None:
        _rename(model, target.name, draw(NASTY_NAMES, label="name"))
    elif kind == "rename_loose" and target is not None:
        target.name = draw(NASTY_NAMES, label="name")  # the nodes still use the old name
    elif kind == "external":
        tensors = list(model.graph.initializer)
        if tensors:
            tensor = draw(st.sampled_from(tensors), label="initializer")
            tensor.data_location = TensorProto.EXTERNAL
            tensor.external_data.add(key="location", value=draw(
                st.sampled_from(["weights.bin", "../../etc/passwd", "/etc/passwd", "", "x\x00y"]), label="location"))
            if draw(st.booleans(), label="keep data"):
                tensor.ClearField("raw_data")
                tensor.ClearField("float_data")
    elif kind == "duplicate" and len(values) >= 2:
        other = draw(st.sampled_from([v for v in values if v is not target]), label="other")
        other.name = target.name
    elif kind == "duplicate" and target is not None:
        model.graph.input.append(target)
    elif kind == "producer":
        model.producer_name = draw(st.text(max_size=300), label="producer")
        model.producer_version = draw(st.text(max_size=300), label="producer_version")
    elif kind == "drop":
        field = draw(st.sampled_from(["node", "input", "output", "initializer"]), label="field")
        model.graph.ClearField(field)
    elif kind == "not_tensor" and target is not None:
        target.type.ClearField("tensor_type")
        target.type.sequence_type.elem_type.tensor_type.elem_type = TensorProto.FLOAT
    return kind


def _byte_mutate(raw: bytes, draw) -> bytes:
    mutated = bytearray(raw)
    kind = draw(st.sampled_from(["flip", "truncate", "insert", "overwrite"]), label="byte mutation")
    if kind == "truncate":
        return bytes(mutated[:draw(st.integers(0, max(0, len(mutated) - 1)), label="length")])
    for _ in range(draw(st.integers(1, 8), label="count")):
        at = draw(st.integers(0, max(0, len(mutated) - 1)), label="offset")
        if kind == "flip" and mutated:
            mutated[at] ^= 1 << draw(st.integers(0, 7), label="bit")
        elif kind == "insert":
            mutated[at:at] = draw(st.binary(min_size=1, max_size=16), label="inserted")
        elif kind == "overwrite":
            chunk = draw(st.binary(min_size=1, max_size=16), label="written")
            mutated[at:at + len(chunk)] = chunk
    return bytes(mutated)


@st.composite
def mutated_models(draw, *, protobuf: bool, bytes_level: bool) -> bytes:
    base = draw(st.sampled_from(sorted(BASES)), label="base")
    raw = BASES[base]()
    if protobuf:
        model = ModelProto()
        model.ParseFromString(raw)
        for _ in range(draw(st.integers(1, 3), label="mutations")):
            event(f"mutation: {_mutate(model, draw)}")
        raw = model.SerializeToString()
    if bytes_level:
        raw = _byte_mutate(raw, draw)
    return raw


# ---- the checks -------------------------------------------------------------------------

def _assert_nothing_stored(tenant, storage) -> None:
    assert files_under(storage) == []
    assert not MLModel.unscoped.filter(tenant=tenant).exists()
    assert not ModelVersion.unscoped.filter(tenant=tenant).exists()


def _assert_consistent(version: ModelVersion, raw: bytes) -> None:
    stored = version.absolute_path
    assert stored.read_bytes() == raw
    assert (version.size_bytes, version.sha256) == (len(raw), hashlib.sha256(raw).hexdigest())
    assert version.opset is None or 0 <= version.opset <= 2**31 - 1
    assert len(version.producer) <= 120 and version.producer.isprintable()
    signature = inspect_onnx(stored)
    assert (version.inputs, version.outputs, version.has_batch_dim) == \
        (signature.inputs, signature.outputs, signature.has_batch_dim)
    tensors = version.inputs + version.outputs
    assert version.inputs and version.outputs
    names = [t["name"] for t in tensors]
    assert len(set(names)) == len(names)
    for tensor in tensors:
        assert tensor["name"] and not UNSAFE_IN_NAMES.search(tensor["name"]), tensor
        assert tensor["datatype"] in KSERVE_TYPES, tensor
        assert all(isinstance(d, int) and (d == -1 or d >= 1) for d in tensor["shape"]), tensor
    assert all(t["datatype"] != "BYTES" for t in version.inputs)
    assert version.has_batch_dim == all(t["shape"] and t["shape"][0] == -1 for t in tensors)


def _upload_checked(tenant, raw: bytes, storage) -> str:
    """Upload through the service in a savepoint of its own, check the outcome, and leave
    nothing for the next example; says which (Hypothesis counts them with --hypothesis-show-statistics)."""
    try:
        with transaction.atomic():
            try:
                version = model_version_upload(tenant=tenant, model_name="fuzzed", chunks=[raw],
                                               filename="fuzzed.onnx")
            except PlatformError as exc:
                assert 400 <= exc.status < 500 and exc.message.strip(), exc
                _assert_nothing_stored(tenant, storage)
                return f"refused: {exc.code}"
            _assert_consistent(version, raw)
            transaction.set_rollback(True)
            return "stored"
    finally:
        shutil.rmtree(storage, ignore_errors=True)


@pytest.fixture
def storage(settings, tmp_path):
    settings.MODEL_STORAGE_DIR = tmp_path / "models"
    return settings.MODEL_STORAGE_DIR


@pytest.fixture
def acme_client(acme):
    return key_client(acme)


@pytest.mark.parametrize("base", sorted(BASES))
def test_the_unmutated_models_are_stored(acme, storage, base):
    assert _upload_checked(acme, BASES[base](), storage) == "stored"


@hypothesis_settings(max_examples=BUDGET)
@given(raw=mutated_models(protobuf=False, bytes_level=True))
def test_byte_mutations_are_stored_consistently_or_refused_cleanly(acme, storage, raw):
    event(_upload_checked(acme, raw, storage))


@hypothesis_settings(max_examples=BUDGET)
@given(raw=mutated_models(protobuf=True, bytes_level=False))
@example(raw=b"")
@example(raw=b"\x00" * 64)
# Found by this test: a 500 each (a negative opset failed full_clean, a NUL reached the database).
@example(raw=_custom_domain(default_opset=-5))
@example(raw=_custom_domain(producer="exporter\x00v1"))
def test_protobuf_mutations_are_stored_consistently_or_refused_cleanly(acme, storage, raw):
    event(_upload_checked(acme, raw, storage))


@hypothesis_settings(max_examples=BUDGET)
@given(raw=mutated_models(protobuf=True, bytes_level=True))
def test_both_mutations_are_stored_consistently_or_refused_cleanly(acme, storage, raw):
    event(_upload_checked(acme, raw, storage))


FILENAMES = st.sampled_from(["model.onnx", "../model.onnx", "a\\b.onnx", "~model.onnx", "mödel.onnx", "m\"o.onnx",
                             "m\no.onnx", "x" * 300 + ".onnx", "model", ".onnx"])


@given(raw=mutated_models(protobuf=True, bytes_level=False) | mutated_models(protobuf=False, bytes_level=True),
       filename=FILENAMES)
def test_the_rest_endpoint_answers_201_or_a_4xx_error(acme, acme_client, storage, raw, filename):
    try:
        with transaction.atomic():
            upload = {"name": "fuzzed", "file": SimpleUploadedFile(filename, raw)}
            response = acme_client.post("/api/v1/models", upload, format="multipart")
            body = response.json()
            event(f"{response.status_code} {body['error']['code'] if 'error' in body else 'stored'}")
            if response.status_code == 201:
                _assert_consistent(ModelVersion.unscoped.get(pk=body["id"]), raw)
            else:
                assert 400 <= response.status_code < 500, (response.status_code, body)
                assert body["error"]["code"] and body["error"]["message"].strip(), body
                _assert_nothing_stored(acme, storage)
            transaction.set_rollback(True)
    finally:
        shutil.rmtree(storage, ignore_errors=True)
