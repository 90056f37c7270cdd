"""Validation of uploaded ONNX files, before anything is stored.

The signature uses KServe v2 datatype names; -1 marks a dynamic dimension. A model has a
batch dimension when every input and output has a dynamic first dimension."""
import re
from dataclasses import dataclass
from pathlib import Path

import onnx
from onnx import TensorProto

from gateway.contract.errors import PlatformError

ONNX_TO_KSERVE = {
    TensorProto.FLOAT: "FP32",
    TensorProto.DOUBLE: "FP64",
    TensorProto.FLOAT16: "FP16",
    TensorProto.INT8: "INT8",
    TensorProto.INT16: "INT16",
    TensorProto.INT32: "INT32",
    TensorProto.INT64: "INT64",
    TensorProto.UINT8: "UINT8",
    TensorProto.UINT16: "UINT16",
    TensorProto.UINT32: "UINT32",
    TensorProto.UINT64: "UINT64",
    TensorProto.BOOL: "BOOL",
    TensorProto.STRING: "BYTES",
}


class InvalidModel(PlatformError):
    code = "invalid_model"


# Tensor names reach Triton's generated configuration, the gateway's directory and every
# client: only names that each of them carries as they are, whatever the exporter.
TENSOR_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:/-]{0,127}")
TENSOR_NAME_RULE = ("1 to 128 ASCII letters, digits and the characters _ . : / -, starting with a letter, "
                    "a digit or _")


# A tensor's fixed dimensions and rank: beyond these no request could carry it.
MAX_DIM = 2**31 - 1
MAX_RANK = 32


def _check_tensor_name(name: str, kind: str) -> None:
    if not TENSOR_NAME.fullmatch(name):
        raise InvalidModel(f"{kind} name {name!r} is not allowed: tensor names must be {TENSOR_NAME_RULE}. "
                           "Rename it in the exporter or with onnx.compose.add_prefix / an Identity node.",
                           code="invalid_tensor_name")


@dataclass(frozen=True)
class OnnxSignature:
    inputs: list[dict]
    outputs: list[dict]
    has_batch_dim: bool
    opset: int | None
    producer: str


def _tensor_spec(value_info, kind: str) -> dict:
    _check_tensor_name(value_info.name, kind)
    t = value_info.type
    if not t.HasField("tensor_type"):
        raise InvalidModel(f"{kind} '{value_info.name}' is not a tensor; only tensor inputs and outputs are supported.")
    elem = t.tensor_type.elem_type
    if elem not in ONNX_TO_KSERVE:
        name = TensorProto.DataType.Name(elem) if elem in TensorProto.DataType.values() else str(elem)
        raise InvalidModel(
            f"{kind} '{value_info.name}' has unsupported data type {name}; supported: "
            + ", ".join(sorted(TensorProto.DataType.Name(k) for k in ONNX_TO_KSERVE))
            + "."
        )
    if not t.tensor_type.HasField("shape"):
        raise InvalidModel(f"{kind} '{value_info.name}' has no shape; export the model with static ranks.")
    shape = [d.dim_value if d.HasField("dim_value") else -1 for d in t.tensor_type.shape.dim]
    if any(d == 0 or d < -1 or d > MAX_DIM for d in shape):
        raise InvalidModel(f"{kind} '{value_info.name}' has shape {shape}: fixed dimensions must be from 1 to "
                           f"{MAX_DIM} (use a symbolic dimension for a dynamic one).", code="invalid_shape")
    if len(shape) > MAX_RANK:
        raise InvalidModel(f"{kind} '{value_info.name}' has rank {len(shape)}; at most {MAX_RANK} dimensions are "
                           "supported.", code="invalid_shape")
    return {"name": value_info.name, "datatype": ONNX_TO_KSERVE[elem], "shape": shape}


def _check_external_data(model: onnx.ModelProto) -> None:
    for tensor in onnx.external_data_helper._get_all_tensors(model):
        if tensor.data_location == TensorProto.EXTERNAL:
            location = next((e.value for e in tensor.external_data if e.key == "location"), "")
            raise InvalidModel(
                f"Initializer '{tensor.name}' references external data file '{location}'. "
                "Upload a self-contained model (onnx.save with save_as_external_data=False).",
                code="external_data",
            )


def inspect_onnx(path: Path) -> OnnxSignature:
    """Parse, check and describe an ONNX file; raise InvalidModel with a reason a user can act on."""
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf decode errors have many types
        raise InvalidModel(f"The file is not a valid ONNX model ({type(exc).__name__}: {exc}).") from exc
    if not model.graph.node and not model.graph.input:
        raise InvalidModel("The file parsed but holds no ONNX graph; is it really an .onnx file?")
    _check_external_data(model)
    try:
        onnx.checker.check_model(model)
    except Exception as exc:
        raise InvalidModel(f"The ONNX checker rejected the model: {exc}") from exc

    initializer_names = {i.name for i in model.graph.initializer}
    inputs = [_tensor_spec(v, "Input") for v in model.graph.input if v.name not in initializer_names]
    outputs = [_tensor_spec(v, "Output") for v in model.graph.output]
    if not inputs or not outputs:
        raise InvalidModel("The model must have at least one input and one output.")
    names = [s["name"] for s in inputs + outputs]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate is not None:
        raise InvalidModel(f"The tensor name {duplicate!r} is used twice among the inputs and outputs; each must "
                           "be unique.", code="invalid_tensor_name")
    for spec in inputs:
        if spec["datatype"] == "BYTES":
            raise InvalidModel(f"Input '{spec['name']}' is a string tensor; string inputs are not supported yet.")
    tensors = inputs + outputs
    has_batch_dim = all(len(s["shape"]) >= 1 and s["shape"][0] == -1 for s in tensors)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    newest = onnx.defs.onnx_opset_version()
    if opset is not None and not 1 <= opset <= newest:
        raise InvalidModel(f"The model imports ONNX opset {opset}; supported opsets are 1 to {newest}.",
                           code="invalid_opset")
    return OnnxSignature(
        inputs=inputs, outputs=outputs, has_batch_dim=has_batch_dim, opset=opset,
        producer=f"{model.producer_name} {model.producer_version}".strip(),
    )
