"""The gateway's request checks against a deployment's signature (gateway/signature.py),
without a server: every protocol's body, good and bad, and property tests that no body
makes the checks crash or let an invalid request through."""
import json
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tritonclient.grpc import service_pb2

from gateway.contract.signature import signature_text
from gateway.grpc_server import WireError, infer_check, model_fields
from gateway.signature import DATATYPES, InvalidRequest, Signature

LIMIT = 64 * 1024 * 1024
DIGITS = Signature(signature_text(
    inputs=[{"name": "X", "datatype": "FP32", "shape": [-1, 64]}],
    outputs=[{"name": "label", "datatype": "INT64", "shape": [-1]},
             {"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]}],
    has_batch_dim=True, max_batch_size=64))
# Two inputs, no batching, a dynamic dim and an integer type.
PAIR = Signature(signature_text(
    inputs=[{"name": "ids", "datatype": "INT8", "shape": [3, -1]}, {"name": "mask", "datatype": "BOOL", "shape": []}],
    outputs=[{"name": "y", "datatype": "FP32", "shape": [3]}], has_batch_dim=False, max_batch_size=0))


def json_body(*inputs, **extra) -> bytes:
    return json.dumps({"inputs": list(inputs), **extra}).encode()


def x(shape=(1, 64), data=None, datatype="FP32", name="X", **fields) -> dict:
    count = int(np.prod(shape))
    tensor = {"name": name, "shape": list(shape), "datatype": datatype, **fields}
    if data is not None or "parameters" not in fields:
        tensor["data"] = data if data is not None else [0.5] * count
    return tensor


def binary_body(tensors: list[tuple[dict, bytes]], **extra) -> tuple[bytes, int]:
    header = json.dumps({"inputs": [t for t, _ in tensors], **extra}).encode()
    return header + b"".join(data for _, data in tensors), len(header)


def check_json(sig: Signature, body: bytes) -> None:
    sig.check_http(body, None, LIMIT)


def test_the_signature_describes_what_clients_send():
    assert DIGITS.max_batch == 64 and DIGITS.inputs["X"].dims == (-1, 64)
    assert DIGITS.outputs == {"label", "probabilities"}
    assert PAIR.max_batch == 0 and PAIR.inputs["ids"].dims == (3, -1) and PAIR.inputs["mask"].dims == (1,)
    # A model with a batch dimension deployed without batching takes its full shape.
    unbatched = Signature(signature_text(inputs=[{"name": "X", "datatype": "FP32", "shape": [-1, 64]}],
                                         outputs=[], has_batch_dim=True, max_batch_size=0))
    assert unbatched.max_batch == 0 and unbatched.inputs["X"].dims == (-1, 64)


@pytest.mark.parametrize("body", [
    json_body(x()),
    json_body(x((3, 64))),
    json_body(x((2, 64), data=[[0.0] * 64, [1] * 64])),
    json_body(x(), outputs=[{"name": "label"}, {"name": "probabilities", "parameters": {"binary_data": True}}]),
    json_body(x(), id="r1", parameters={"binary_data_output": True}),
    # Text that looks like a key inside a string sends the request to the exact check, which passes it.
    json_body(x(), id='a": "b', parameters={"note": {"nested": 1}}),
    json.dumps({"inputs": [x()]}, indent=2).encode(),
])
def test_well_formed_json_requests_pass(body):
    check_json(DIGITS, body)


def test_well_formed_requests_for_an_unbatched_model_pass():
    check_json(PAIR, json_body({"name": "ids", "datatype": "INT8", "shape": [3, 2], "data": [-128, 127, 0, 1, 2, 3]},
                               {"name": "mask", "datatype": "BOOL", "shape": [1], "data": [True]}))
    check_json(PAIR, json_body({"name": "ids", "datatype": "INT8", "shape": [3, 0], "data": []},
                               {"name": "mask", "datatype": "BOOL", "shape": [1], "data": [False]}))


@pytest.mark.parametrize("body, message", [
    # The request that made Triton allocate 256 GB and abort.
    (json_body(x((1000000000, 64), data=[0.0] * 64)), "The batch size of input 'X' is 1000000000; this deployment "
                                                      "takes 1 to 64"),
    (json_body(x((1, 64), data=[0.0])), "Input 'X' has shape [1, 64], which holds 64 elements, but 1 are given."),
    (json_body(x((1, 64), data=[0.0] * 65)), "but 65 are given"),
    (json_body(x(name="nope")), "Input 'nope' is not an input of this deployment; its inputs are: X (FP32 [-1, 64])"),
    (json_body(x(datatype="INT64")), "Input 'X' is FP32; the request says 'INT64'."),
    (json_body(x((1, 8, 8))), "has rank 3"),
    (json_body(x((1, 63))), "Dimension 1 of input 'X' must be 64, not 63"),
    (json_body(x((0, 64))), "The batch size of input 'X' is 0"),
    (json_body(x((65, 64))), "this deployment takes 1 to 64"),
    (json_body(x((1, -64))), "is negative"),
    (json_body(x((1, 64.0))), "must be a list of whole numbers"),
    (json_body(x((True, 64))), "must be a list of whole numbers"),
    (json_body(x(), x()), "Input 'X' is given twice."),
    (json_body(), "non-empty \"inputs\" list"),
    (b'{"inputs": {}}', "non-empty \"inputs\" list"),
    (b"[]", "must be a JSON object"),
    (b"{not json", "not valid JSON"),
    (b"\xff\xfe", "not valid JSON"),
    (json_body(x(data=["a"] * 64)), "'a' is not a number"),
    (json_body(x(data=[True] * 64)), "True is not a number"),
    (json_body(x(data=[{"v": 1}] * 64)), "is not a number"),
    (json_body(x(data=[None] * 64)), "None is not a number"),
    (b'{"inputs":[{"name":"X","shape":[1,64],"datatype":"FP32","data":[' + b",".join([b"0"] * 63) + b",1e400]}]}",
     "number is infinity"),
    (json_body(x(data=[0.5] * 63 + [1e400])), "not valid JSON"),
    (b'{"inputs":[{"name":"X","shape":[1,64],"datatype":"FP32","data":[' + b",".join([b"0"] * 63) + b",NaN]}]}",
     "not valid JSON"),
    # Keys written with spaces before the colon are still counted.
    (b'{"inputs":[{"name":"X","shape":[1,64],"shape" :[1000000000,64],"datatype":"FP32","data":[' +
     b",".join([b"0"] * 64) + b"]}]}", "The key 'shape' appears twice"),
    (b'{"inputs":[{"name":"X","shape" :\t[1000000000,64],"shape":[1,64],"datatype":"FP32","data":[' +
     b",".join([b"0"] * 64) + b"]}]}", "The key 'shape' appears twice"),
    # A parser keeping the first of two keys would see a shape we never checked.
    (b'{"inputs":[{"name":"X","shape":[1000000000,64],"shape":[1,64],"datatype":"FP32","data":[' +
     b",".join([b"0"] * 64) + b"]}]}", "The key 'shape' appears twice"),
    (json_body({"name": "X", "shape": [1, 64], "datatype": "FP32"}), "Input 'X' has no data."),
    (json_body(x(parameters={"shared_memory_region": "other", "shared_memory_byte_size": 256})),
     "Triton shared memory is not available"),
    (json_body(x(), outputs=[{"name": "secret"}]), "Output 'secret' is not an output"),
    (json_body(x(), outputs=[{"name": "label", "parameters": {"shared_memory_region": "r"}}]), "shared memory"),
    (json_body(x(), outputs="label"), "\"outputs\" must be a list"),
    (json_body(x(parameters={"binary_data_size": 256})), "no Inference-Header-Content-Length"),
    (b"[" * 100000 + b"]" * 100000, "not valid JSON"),
])
def test_invalid_json_requests_name_the_input_and_the_fault(body, message):
    with pytest.raises(InvalidRequest) as caught:
        check_json(DIGITS, body)
    assert message in str(caught.value)


@pytest.mark.parametrize("tensors, message", [
    ([({"name": "ids", "datatype": "INT8", "shape": [3, 1], "data": [1, 2, 300]},),
      ({"name": "mask", "datatype": "BOOL", "shape": [1], "data": [True]},)],
     "300 is not a whole number from -128 to 127"),
    ([({"name": "ids", "datatype": "INT8", "shape": [3, 1], "data": [1, 2, 3.0]},),
      ({"name": "mask", "datatype": "BOOL", "shape": [1], "data": [True]},)], "3.0 is not a whole number"),
    ([({"name": "ids", "datatype": "INT8", "shape": [3, 1], "data": [1, 2, 3]},),
      ({"name": "mask", "datatype": "BOOL", "shape": [1], "data": [1]},)], "1 is not true or false"),
    ([({"name": "ids", "datatype": "INT8", "shape": [3, 1], "data": [1, 2, 3]},)], "lacks input(s) mask (BOOL [1])"),
    ([({"name": "ids", "datatype": "INT8", "shape": [3, 4000000000], "data": []},),
      ({"name": "mask", "datatype": "BOOL", "shape": [1], "data": [True]},)], "over the 67108864 byte request limit"),
])
def test_invalid_values_and_missing_inputs_are_refused(tensors, message):
    with pytest.raises(InvalidRequest) as caught:
        check_json(PAIR, json_body(*[t for (t,) in tensors]))
    assert message in str(caught.value)


def test_binary_tensors_are_checked_against_their_declared_sizes():
    data = np.ones((2, 64), dtype=np.float32).tobytes()
    good, good_length = binary_body([(x((2, 64), parameters={"binary_data_size": len(data)}), data)])
    DIGITS.check_http(good, good_length, LIMIT)
    for body, length, message in [
        # binary_data_size lies about the shape.
        (*binary_body([(x((1000000000, 64), parameters={"binary_data_size": len(data)}), data)]), "batch size"),
        (*binary_body([(x((2, 64), parameters={"binary_data_size": 4}), data[:4])]), "needs 512 bytes"),
        (*binary_body([(x((2, 64), parameters={"binary_data_size": "512"}), data)]), "binary_data_size '512'"),
        # The body holds more (or less) than the inputs declare.
        (good + b"\0" * 4, good_length, "binary tensor data is 516 bytes"),
        (good[:-4], good_length, "binary tensor data is 508 bytes"),
        (*binary_body([(x((2, 64), parameters={"binary_data_size": 512}, data=[0.0] * 128), data)]),
         "both data and binary_data_size"),
    ]:
        with pytest.raises(InvalidRequest) as caught:
            DIGITS.check_http(body, length, LIMIT)
        assert message in str(caught.value)


# gRPC ------------------------------------------------------------------------------------

def grpc_request(*inputs, raw: list[bytes] = (), outputs=()) -> bytes:
    request = service_pb2.ModelInferRequest(model_name="digits")
    for name, datatype, shape, contents in inputs:
        tensor = request.inputs.add(name=name, datatype=datatype, shape=shape)
        for field, values in (contents or {}).items():
            getattr(tensor.contents, field).extend(values)
    for name in outputs:
        request.outputs.add(name=name)
    request.raw_input_contents.extend(raw)
    return request.SerializeToString()


def check_grpc(sig: Signature, message: bytes) -> None:
    infer_check(sig, message, model_fields(message))


def test_grpc_requests_with_raw_or_typed_contents_pass():
    raw = np.ones((2, 64), dtype=np.float32).tobytes()
    check_grpc(DIGITS, grpc_request(("X", "FP32", [2, 64], None), raw=[raw], outputs=["label"]))
    check_grpc(DIGITS, grpc_request(("X", "FP32", [1, 64], {"fp32_contents": [0.5] * 64})))


@pytest.mark.parametrize("message, text", [
    (grpc_request(("X", "FP32", [1000000000, 64], None), raw=[b"\0" * 256]), "batch size of input 'X' is 1000000000"),
    (grpc_request(("X", "FP32", [1, 64], None), raw=[b"\0" * 255]), "raw contents of input 'X' are 255 bytes"),
    (grpc_request(("X", "FP32", [1, 64], {"fp32_contents": [0.5] * 63})), "but 63 are given"),
    (grpc_request(("X", "FP32", [1, 64], {"int_contents": [1] * 64})), "its values go in contents.fp32_contents"),
    (grpc_request(("X", "FP32", [1, 64], {"fp32_contents": [0.5] * 64}), raw=[b"\0" * 256]),
     "both raw_input_contents and typed contents"),
    (grpc_request(("X", "FP32", [1, 64], None), ("X", "FP32", [1, 64], None), raw=[b"\0" * 256]),
     "2 inputs but 1 raw_input_contents"),
    (grpc_request(("Y", "FP32", [1, 64], None), raw=[b"\0" * 256]), "Input 'Y' is not an input"),
    (grpc_request(("X", "FP64", [1, 64], None), raw=[b"\0" * 512]), "Input 'X' is FP32; the request says 'FP64'"),
    (grpc_request(("X", "FP32", [1, 64], None), raw=[b"\0" * 256], outputs=["nope"]), "Output 'nope'"),
    (grpc_request(), "has no inputs"),
    (service_pb2.ModelInferRequest(model_name="d", inputs=[service_pb2.ModelInferRequest.InferInputTensor(
        name="X", datatype="FP32", shape=[1, 64],
        parameters={"shared_memory_region": service_pb2.InferParameter(string_param="r")})]).SerializeToString(),
     "shared memory"),
])
def test_invalid_grpc_requests_are_refused_without_reading_tensors(message, text):
    with pytest.raises(InvalidRequest) as caught:
        check_grpc(DIGITS, message)
    assert text in str(caught.value)


def test_fp16_has_no_typed_contents_and_must_be_raw():
    half = Signature(signature_text(inputs=[{"name": "h", "datatype": "FP16", "shape": [-1, 2]}], outputs=[],
                                    has_batch_dim=True, max_batch_size=8))
    check_grpc(half, grpc_request(("h", "FP16", [1, 2], None), raw=[b"\0" * 4]))
    with pytest.raises(InvalidRequest, match="has no typed contents"):
        check_grpc(half, grpc_request(("h", "FP16", [1, 2], None)))


# Properties ------------------------------------------------------------------------------

def valid_json_request(draw_rows: int, values: list[float]) -> bytes:
    return json_body(x((draw_rows, 64), data=values))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=30)
tensor_like = st.fixed_dictionaries(
    {}, optional={"name": st.sampled_from(["X", "Y", "", "x"]) | st.text(max_size=4),
                  "datatype": st.sampled_from(sorted(DATATYPES)) | st.text(max_size=4),
                  "shape": st.lists(st.integers(-3, 2**40) | st.sampled_from([1, 64]), max_size=4) | json_values,
                  "data": st.lists(st.floats(allow_nan=False, width=32), max_size=130) | json_values,
                  "parameters": st.dictionaries(st.sampled_from(["binary_data_size", "shared_memory_region", "x"]),
                                                st.integers(0, 600) | st.text(max_size=3), max_size=2)})
PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def is_valid_for_digits(request) -> bool:
    """An independent statement of what Triton would accept for digits (JSON, no binary)."""
    if not isinstance(request, dict) or not isinstance(request.get("inputs"), list) or len(request["inputs"]) != 1:
        return False
    [tensor] = request["inputs"]
    if not isinstance(tensor, dict) or set(tensor) - {"name", "datatype", "shape", "data"}:
        return False
    shape = tensor.get("shape")
    if tensor.get("name") != "X" or tensor.get("datatype") != "FP32" or not isinstance(shape, list) \
            or len(shape) != 2 or any(type(d) is not int for d in shape) or shape[1] != 64 \
            or not 1 <= shape[0] <= 64:
        return False
    data = np.asarray(tensor.get("data"), dtype=object).ravel() if isinstance(tensor.get("data"), list) else None
    return data is not None and data.size == shape[0] * 64 and all(
        type(v) in (int, float) and np.isfinite(float(v)) for v in data)


@PROPERTY
@given(st.lists(tensor_like, max_size=3), st.booleans())
def test_no_json_body_crashes_the_check_and_none_invalid_passes(inputs, wrap):
    request = {"inputs": inputs} if wrap else inputs
    body = json.dumps(request).encode()
    try:
        check_json(DIGITS, body)
    except InvalidRequest:
        assert not is_valid_for_digits(request)
    else:
        assert is_valid_for_digits(request), request


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 64), st.floats(allow_nan=False, allow_infinity=False, width=32) | st.integers(-9, 9),
       st.lists(st.floats(allow_nan=False, allow_infinity=False, width=32), max_size=64), st.booleans())
def test_every_well_formed_json_request_passes(rows, fill, some, nested):
    values = (some + [fill] * 64 * rows)[:rows * 64]
    check_json(DIGITS, valid_json_request(rows, [values[i:i + 64] for i in range(0, len(values), 64)] if nested
                                          else values))


@PROPERTY
@given(st.binary(max_size=300))
def test_no_bytes_crash_the_json_check(body):
    try:
        check_json(DIGITS, body)
    except InvalidRequest:
        pass


@PROPERTY
@given(st.binary(max_size=300), st.integers(0, 320))
def test_no_bytes_crash_the_binary_check(body, length):
    try:
        DIGITS.check_http(body, min(length, len(body)) or None, LIMIT)
    except InvalidRequest:
        pass


@PROPERTY
@given(st.lists(st.tuples(st.sampled_from(["X", "Y"]), st.sampled_from(["FP32", "FP16", "INT64"]),
                          st.lists(st.integers(-2, 2**40) | st.just(64), max_size=3)), max_size=2),
       st.lists(st.integers(0, 600), max_size=2), st.integers(0, 80))
def test_no_grpc_request_crashes_the_check_and_none_invalid_passes(inputs, raw_sizes, typed):
    message = grpc_request(*[(n, d, s, {"fp32_contents": [0.0] * typed} if typed else None) for n, d, s in inputs],
                           raw=[b"\0" * size for size in raw_sizes])
    valid = (len(inputs) == 1 and inputs[0][:2] == ("X", "FP32") and len(inputs[0][2]) == 2
             and inputs[0][2][1] == 64 and 1 <= inputs[0][2][0] <= 64
             and ((raw_sizes == [inputs[0][2][0] * 256] and not typed)
                  or (not raw_sizes and typed == inputs[0][2][0] * 64)))
    try:
        check_grpc(DIGITS, message)
    except InvalidRequest:
        assert not valid
    else:
        assert valid, (inputs, raw_sizes, typed)


@PROPERTY
@given(st.binary(max_size=200))
def test_no_bytes_crash_the_grpc_walk_or_check(message):
    try:
        fields = model_fields(message)
    except WireError:
        return
    try:
        infer_check(DIGITS, message, fields)
    except InvalidRequest:
        pass


def test_struct_packed_raw_contents_of_every_size_are_counted_exactly():
    for rows in (1, 2, 64):
        raw = struct.pack(f"<{rows * 64}f", *([0.25] * rows * 64))
        check_grpc(DIGITS, grpc_request(("X", "FP32", [rows, 64], None), raw=[raw]))


def test_a_description_that_passed_is_checked_again_only_for_its_sizes():
    sig = Signature(signature_text(inputs=[{"name": "X", "datatype": "FP32", "shape": [-1, 64]}], outputs=[],
                                   has_batch_dim=True, max_batch_size=64))
    data = np.ones((2, 64), dtype=np.float32).tobytes()
    body, length = binary_body([(x((2, 64), parameters={"binary_data_size": len(data)}), data)])
    sig.check_http(body, length, LIMIT)
    assert sig.passed == {body[:length]: 512}
    sig.check_http(body, length, LIMIT)
    with pytest.raises(InvalidRequest, match="binary tensor data is 508 bytes"):
        sig.check_http(body[:-4], length, LIMIT)
    raw = np.ones((2, 64), dtype=np.float32).tobytes()
    message = grpc_request(("X", "FP32", [2, 64], None), raw=[raw])
    check_grpc(sig, message)
    check_grpc(sig, message)
    with pytest.raises(InvalidRequest, match="raw contents of input 'X' are 256 bytes"):
        check_grpc(sig, grpc_request(("X", "FP32", [2, 64], None), raw=[raw[:256]]))
    # JSON data and typed contents vary with every request: never remembered.
    check_json(sig, json_body(x()))
    check_grpc(sig, grpc_request(("X", "FP32", [1, 64], {"fp32_contents": [0.5] * 64})))
    assert len(sig.passed) == 2
    for rows in range(1, 65):
        data = np.ones((rows, 64), dtype=np.float32).tobytes()
        sig.check_http(*binary_body([(x((rows, 64), parameters={"binary_data_size": len(data)}), data)]), LIMIT)
    assert len(sig.passed) <= Signature.PASSED_MAX
