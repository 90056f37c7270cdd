"""Inference requests checked against their deployment's signature before Triton sees them.

A shared Triton server trusts what it is sent: a request declaring a [1000000000, 64]
tensor with 64 values made it allocate 256 GB and abort, taking every tenant's models on
it down. The gateway therefore checks every inference request, over HTTP (JSON tensors
and the binary tensor extension) and gRPC, against what the deployment accepts:

- every input is one the model has, given once, and every input the model has is given;
- its datatype is the model's;
- its shape has the model's rank and fixed dims; a batched model's first dim (the batch
  size) is between 1 and the deployment's max_batch_size, the same for every input;
- the data supplied holds exactly the elements the shape declares (JSON elements of the
  right type, `binary_data_size`, raw input contents or typed contents), and the
  declared bytes stay within the platform's body limit;
- requested outputs are the model's outputs; no Triton shared-memory parameters (a
  shared server's memory regions are not the tenant's to name).

The signature travels with the route in Redis (field `sig` of gw:route:*, written by
the control plane: see gateway/contract/signature.py), so admission stays one round trip; each
process parses a signature text once. A failed check raises InvalidRequest naming the
input and what is wrong; the gateway answers 400 (gRPC INVALID_ARGUMENT) and meters it."""
import json

import orjson
from tritonclient.grpc import service_pb2

# KServe datatype -> (bytes per element, kind): f float, i signed, u unsigned, b bool.
DATATYPES = {
    "BOOL": (1, "b"), "UINT8": (1, "u"), "UINT16": (2, "u"), "UINT32": (4, "u"), "UINT64": (8, "u"),
    "INT8": (1, "i"), "INT16": (2, "i"), "INT32": (4, "i"), "INT64": (8, "i"),
    "FP16": (2, "f"), "FP32": (4, "f"), "FP64": (8, "f"),
}
SHARED_MEMORY_KEYS = frozenset(("shared_memory_region", "shared_memory_byte_size", "shared_memory_offset"))
# gRPC typed contents (InferTensorContents) that carry each datatype; FP16 has none.
CONTENTS_FIELD = {
    "BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
    "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents",
    "UINT64": "uint64_contents", "FP32": "fp32_contents", "FP64": "fp64_contents",
}
CONTENTS_FIELDS = ("bool_contents", "int_contents", "int64_contents", "uint_contents", "uint64_contents",
                   "fp32_contents", "fp64_contents", "bytes_contents")
InferInputTensor = service_pb2.ModelInferRequest.InferInputTensor
InferRequestedOutputTensor = service_pb2.ModelInferRequest.InferRequestedOutputTensor


class InvalidRequest(ValueError):
    """The request does not fit the deployment's signature; the message says how."""


def _shape_text(dims) -> str:
    return "[" + ", ".join(str(d) for d in dims) + "]"


class TensorSpec:
    __slots__ = ("name", "datatype", "dims", "itemsize", "kind", "low", "high")

    def __init__(self, name: str, datatype: str, dims: list[int]):
        self.name, self.datatype, self.dims = name, datatype, tuple(dims)
        self.itemsize, self.kind = DATATYPES[datatype]
        bits = self.itemsize * 8
        self.low = -(1 << (bits - 1)) if self.kind == "i" else 0
        self.high = (1 << (bits - 1)) - 1 if self.kind == "i" else (1 << bits) - 1

    def describe(self) -> str:
        return f"{self.name} ({self.datatype} {_shape_text(self.dims)})"


class Signature:
    """A deployment's signature and the request checks against it. Requests whose tensors
    travel apart from their description (binary tensors, raw gRPC contents) repeat the
    same description call after call: once it passed, only the tensors' sizes are checked
    again (`passed`, per signature, bounded)."""

    __slots__ = ("max_batch", "inputs", "outputs", "described", "passed")
    PASSED_MAX = 256

    def __init__(self, text: str):
        data = json.loads(text)
        self.max_batch = int(data["mb"])
        self.inputs = {name: TensorSpec(name, datatype, dims) for name, datatype, dims in data["in"]}
        self.outputs = frozenset(data["out"])
        self.described = ", ".join(spec.describe() for spec in self.inputs.values())
        self.passed: dict = {}

    def _remember(self, description, sizes) -> None:
        if len(self.passed) >= self.PASSED_MAX:
            self.passed.clear()
        self.passed[description] = sizes

    # -- the checks every protocol shares ------------------------------------------------

    def spec(self, name) -> TensorSpec:
        spec = self.inputs.get(name) if isinstance(name, str) else None
        if spec is None:
            raise InvalidRequest(f"Input {name!r} is not an input of this deployment; its inputs are: "
                                 f"{self.described}.")
        return spec

    def elements(self, spec: TensorSpec, datatype, shape, limit: int) -> int:
        """Check datatype and shape; the number of elements the shape declares."""
        if datatype != spec.datatype:
            raise InvalidRequest(f"Input '{spec.name}' is {spec.datatype}; the request says {datatype!r}.")
        if not isinstance(shape, list) or any(type(d) is not int for d in shape):
            raise InvalidRequest(f"The shape of input '{spec.name}' must be a list of whole numbers.")
        dims = spec.dims
        if len(shape) != len(dims):
            raise InvalidRequest(f"Input '{spec.name}' has shape {_shape_text(dims)} (rank {len(dims)}); the "
                                 f"request's shape {_shape_text(shape)} has rank {len(shape)}.")
        count = 1
        for axis, (want, got) in enumerate(zip(dims, shape, strict=True)):
            if got < 0:
                raise InvalidRequest(f"Dimension {axis} of input '{spec.name}' is negative ({got}).")
            if want != -1 and got != want:
                raise InvalidRequest(f"Dimension {axis} of input '{spec.name}' must be {want}, not {got} "
                                     f"(its shape is {_shape_text(dims)}).")
            count *= got
        if self.max_batch:
            batch = shape[0]
            if not 1 <= batch <= self.max_batch:
                raise InvalidRequest(f"The batch size of input '{spec.name}' is {batch}; this deployment takes "
                                     f"1 to {self.max_batch} (its max_batch_size).")
        if count * spec.itemsize > limit:
            raise InvalidRequest(f"Input '{spec.name}' declares {count * spec.itemsize} bytes "
                                 f"({_shape_text(shape)} {spec.datatype}), over the {limit} byte request limit.")
        return count

    def complete(self, seen: dict, batches: set) -> None:
        if len(seen) != len(self.inputs):
            missing = [spec.describe() for name, spec in self.inputs.items() if name not in seen]
            raise InvalidRequest(f"The request lacks input(s) {', '.join(missing)}.")
        if len(batches) > 1:
            raise InvalidRequest(f"All inputs must have the same batch size; the request has "
                                 f"{', '.join(str(b) for b in sorted(batches))}.")

    def output(self, name) -> None:
        if not isinstance(name, str) or name not in self.outputs:
            raise InvalidRequest(f"Output {name!r} is not an output of this deployment; its outputs are: "
                                 f"{', '.join(sorted(self.outputs))}.")

    # -- HTTP: JSON tensors and the binary tensor extension -------------------------------

    def check_http(self, body: bytes, header_length: int | None, limit: int) -> None:
        header = body if header_length is None else body[:header_length]
        if header_length is not None and self.passed.get(header) == len(body) - header_length:
            return
        request = _parse(header)
        if not isinstance(request, dict):
            raise InvalidRequest("The inference request must be a JSON object with an \"inputs\" list.")
        inputs = request.get("inputs")
        if not isinstance(inputs, list) or not inputs:
            raise InvalidRequest("The inference request must have a non-empty \"inputs\" list.")
        _no_shared_memory(request.get("parameters"), "the request")
        seen, batches, binary = {}, set(), 0
        for tensor in inputs:
            if not isinstance(tensor, dict):
                raise InvalidRequest("Each entry of \"inputs\" must be an object with name, shape, datatype "
                                     "and data.")
            spec = self.spec(tensor.get("name"))
            if spec.name in seen:
                raise InvalidRequest(f"Input '{spec.name}' is given twice.")
            shape = tensor.get("shape")
            count = self.elements(spec, tensor.get("datatype"), shape, limit)
            seen[spec.name] = count
            if self.max_batch:
                batches.add(shape[0])
            parameters = tensor.get("parameters")
            _no_shared_memory(parameters, f"input '{spec.name}'")
            size = parameters.get("binary_data_size") if isinstance(parameters, dict) else None
            if size is not None:
                if header_length is None:
                    raise InvalidRequest(f"Input '{spec.name}' has binary_data_size but the request has no "
                                         "Inference-Header-Content-Length header.")
                if type(size) is not int or size != count * spec.itemsize:
                    raise InvalidRequest(f"Input '{spec.name}' declares binary_data_size {size!r}; its shape "
                                         f"{_shape_text(shape)} {spec.datatype} needs {count * spec.itemsize} "
                                         "bytes.")
                if "data" in tensor:
                    raise InvalidRequest(f"Input '{spec.name}' has both data and binary_data_size.")
                binary += size
            elif "data" not in tensor:
                raise InvalidRequest(f"Input '{spec.name}' has no data.")
            else:
                supplied = _json_elements(tensor["data"], spec)
                if supplied != count:
                    raise InvalidRequest(f"Input '{spec.name}' has shape {_shape_text(shape)}, which holds {count} "
                                         f"elements, but {supplied} are given.")
        self.complete(seen, batches)
        outputs = request.get("outputs")
        if outputs is not None:
            if not isinstance(outputs, list):
                raise InvalidRequest("\"outputs\" must be a list of objects with a name.")
            for output in outputs:
                if not isinstance(output, dict):
                    raise InvalidRequest("Each entry of \"outputs\" must be an object with a name.")
                self.output(output.get("name"))
                _no_shared_memory(output.get("parameters"), f"output {output.get('name')!r}")
        if header_length is not None:
            if binary != len(body) - header_length:
                raise InvalidRequest(f"The binary tensor data is {len(body) - header_length} bytes, but the "
                                     f"inputs' binary_data_size add up to {binary}.")
            if not any("data" in tensor for tensor in inputs):
                self._remember(header, binary)

    # -- gRPC: ModelInferRequest, read without copying tensor bytes ------------------------

    def check_grpc(self, inputs: list[bytes], outputs: list[bytes], raw_sizes: list[int], limit: int) -> None:
        """`inputs` and `outputs`: the serialized InferInputTensor and InferRequestedOutputTensor
        messages; `raw_sizes`: the length of each raw_input_contents entry."""
        if not inputs:
            raise InvalidRequest("The inference request has no inputs.")
        description = (*inputs, None, *outputs)
        if raw_sizes and self.passed.get(description) == raw_sizes:
            return
        if raw_sizes and len(raw_sizes) != len(inputs):
            raise InvalidRequest(f"The request has {len(inputs)} inputs but {len(raw_sizes)} raw_input_contents; "
                                 "give raw contents for every input or for none.")
        seen, batches = {}, set()
        for index, message in enumerate(inputs):
            try:
                tensor = InferInputTensor.FromString(message)
            except Exception as exc:  # protobuf's DecodeError and friends
                raise InvalidRequest(f"Input {index} is not a valid InferInputTensor: {exc}.") from None
            spec = self.spec(tensor.name)
            if spec.name in seen:
                raise InvalidRequest(f"Input '{spec.name}' is given twice.")
            shape = list(tensor.shape)
            count = self.elements(spec, tensor.datatype, shape, limit)
            seen[spec.name] = count
            if self.max_batch:
                batches.add(shape[0])
            _no_shared_memory(tensor.parameters, f"input '{spec.name}'")
            given = [field for field in CONTENTS_FIELDS if len(getattr(tensor.contents, field))]
            if raw_sizes:
                if given:
                    raise InvalidRequest(f"Input '{spec.name}' has both raw_input_contents and typed contents.")
                if raw_sizes[index] != count * spec.itemsize:
                    raise InvalidRequest(f"The raw contents of input '{spec.name}' are {raw_sizes[index]} bytes; "
                                         f"its shape {_shape_text(shape)} {spec.datatype} needs "
                                         f"{count * spec.itemsize}.")
                continue
            field = CONTENTS_FIELD.get(spec.datatype)
            if field is None:
                raise InvalidRequest(f"Input '{spec.name}' is {spec.datatype}, which has no typed contents: send "
                                     "it in raw_input_contents.")
            if given and given != [field]:
                raise InvalidRequest(f"Input '{spec.name}' is {spec.datatype}: its values go in contents.{field}, "
                                     f"not {', '.join(given)}.")
            supplied = len(getattr(tensor.contents, field))
            if supplied != count:
                raise InvalidRequest(f"Input '{spec.name}' has shape {_shape_text(shape)}, which holds {count} "
                                     f"elements, but {supplied} are given.")
        self.complete(seen, batches)
        for index, message in enumerate(outputs):
            try:
                output = InferRequestedOutputTensor.FromString(message)
            except Exception as exc:
                raise InvalidRequest(f"Requested output {index} is not a valid InferRequestedOutputTensor: "
                                     f"{exc}.") from None
            self.output(output.name)
            _no_shared_memory(output.parameters, f"output '{output.name}'")
        if raw_sizes:
            self._remember(description, raw_sizes)




def _parse(header: bytes) -> dict:
    """The request's JSON, parsed with orjson (a tenth of the standard library's time here).
    orjson keeps the last of two equal keys where Triton's parser finds the first, so a
    duplicate would make the two see different requests: when the keys in the text
    outnumber those parsed, the standard parser decides exactly whether a key repeats."""
    try:
        request = orjson.loads(header)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"The inference request is not valid JSON: {str(exc).rstrip('.')}.") from None
    # When every colon in the text follows a quote, no key has space before its colon, so
    # the quote-colon pairs count every key (and any that strings hold): equal to the
    # parsed keys, no key repeats. Otherwise (a key twice, "a:b" in a string, spacing)
    # the exact check decides.
    pairs = header.count(b'":')
    if pairs != header.count(b":") or pairs != _keys_parsed(request):
        try:
            json.loads(header, object_pairs_hook=_unique_keys)
        except (ValueError, RecursionError) as exc:
            if isinstance(exc, InvalidRequest):
                raise
            raise InvalidRequest(f"The inference request is not valid JSON: {str(exc).rstrip('.')}.") from None
    return request


def _keys_parsed(request) -> int:
    """The keys of the objects a request is made of (objects deeper down are not counted,
    which only sends an odd request to the exact check)."""
    if type(request) is not dict:
        return 0
    count = len(request)
    for name in ("inputs", "outputs"):
        tensors = request.get(name)
        if type(tensors) is list:
            for tensor in tensors:
                if type(tensor) is dict:
                    count += len(tensor)
                    parameters = tensor.get("parameters")
                    if type(parameters) is dict:
                        count += len(parameters)
    parameters = request.get("parameters")
    if type(parameters) is dict:
        count += len(parameters)
    return count


def _unique_keys(pairs: list) -> dict:
    # A parser that keeps the first of two equal keys would see another request than ours.
    result = dict(pairs)
    if len(result) != len(pairs):
        names = [name for name, _ in pairs]
        duplicate = next(name for name in names if names.count(name) > 1)
        raise InvalidRequest(f"The key {duplicate!r} appears twice in one object.")
    return result


def _no_shared_memory(parameters, where: str) -> None:
    if not parameters:
        return
    if not isinstance(parameters, dict) and not hasattr(parameters, "keys"):
        raise InvalidRequest(f"The parameters of {where} must be an object.")
    used = SHARED_MEMORY_KEYS.intersection(parameters.keys())
    if used:
        raise InvalidRequest(f"{where[0].upper()}{where[1:]} uses {sorted(used)[0]}: Triton shared memory is not "
                             "available through the platform; send the data in the request.")


ALLOWED_TYPES = {"f": frozenset((float, int)), "i": frozenset((int,)), "u": frozenset((int,)), "b": frozenset((bool,))}


def _json_elements(data, spec: TensorSpec) -> int:
    """How many elements `data` (flat or nested lists) holds, each checked to be a value
    of the input's datatype (a number, a whole number in range, or a boolean). orjson has
    already refused NaN and infinities. A list is checked by the set of its element types
    and its min and max, in C, rather than value by value."""
    allowed = ALLOWED_TYPES[spec.kind]
    count, stack = 0, [data if type(data) is list else [data]]
    while stack:
        values = stack.pop()
        types = set(map(type, values))
        if list in types:
            stack.extend(value for value in values if type(value) is list)
            values = [value for value in values if type(value) is not list]
            types.discard(list)
        if not types <= allowed:
            bad = next(value for value in values if type(value) not in allowed)
            if spec.kind == "b":
                raise InvalidRequest(f"Input '{spec.name}' is BOOL: {bad!r} is not true or false.")
            if spec.kind == "f":
                raise InvalidRequest(f"Input '{spec.name}' is {spec.datatype}: {bad!r} is not a number.")
            raise InvalidRequest(f"Input '{spec.name}' is {spec.datatype}: {bad!r} is not a whole number from "
                                 f"{spec.low} to {spec.high}.")
        if values and spec.kind in "iu":
            low, high = min(values), max(values)
            if low < spec.low or high > spec.high:
                bad = low if low < spec.low else high
                raise InvalidRequest(f"Input '{spec.name}' is {spec.datatype}: {bad!r} is not a whole number from "
                                     f"{spec.low} to {spec.high}.")
        count += len(values)
    return count


_parsed: dict[str, Signature] = {}


def signature(text: str) -> Signature | None:
    """The parsed signature of a route's `sig` field (None when the route has none)."""
    if not text:
        return None
    parsed = _parsed.get(text)
    if parsed is None:
        if len(_parsed) > 4096:
            _parsed.clear()
        parsed = _parsed[text] = Signature(text)
    return parsed
