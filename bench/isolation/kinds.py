"""The requests of the noisy-neighbour benchmark, by kind, as bytes on the wire, and the
histogram columns their outcomes are counted in."""
import json
import random

from bench.load import build_request

HTTP_KINDS = ("wrong_name", "wrong_dtype", "wrong_rank", "huge_shape", "count_mismatch", "truncated_json",
              "garbage_body", "binary_size_lie", "binary_short", "binary_huge_shape", "overflow_shape",
              "negative_shape")
GRPC_KINDS = ("grpc_wrong_name", "grpc_wrong_dtype", "grpc_raw_short", "grpc_huge_shape", "grpc_huge_contents",
              "grpc_overflow_shape", "grpc_garbage")
CATEGORIES = {"valid": ("valid",), "malformed": HTTP_KINDS, "grpc": GRPC_KINDS}
BUCKETS = ("2xx", "400", "4xx other", "429", "5xx", "timeout", "conn error", "in flight")
GRPC_BUCKETS = {"OK": "2xx", "INVALID_ARGUMENT": "400", "OUT_OF_RANGE": "400", "FAILED_PRECONDITION": "400",
                "UNIMPLEMENTED": "400", "RESOURCE_EXHAUSTED": "429", "UNAVAILABLE": "5xx", "INTERNAL": "5xx",
                "UNKNOWN": "5xx", "DATA_LOSS": "5xx", "DEADLINE_EXCEEDED": "timeout"}


def bucket(outcome: str) -> str:
    """The histogram column of an outcome: an HTTP status, grpc:<CODE>, timeout or conn_error."""
    if outcome.startswith("grpc:"):
        return GRPC_BUCKETS.get(outcome[5:], "4xx other")
    if outcome in ("timeout", "conn_error", "in_flight"):
        return outcome.replace("_", " ")
    status = int(outcome)
    if status < 300:
        return "2xx"
    if status in (400, 429):
        return str(status)
    return "5xx" if status >= 500 else "4xx other"


def http_requests(*, port: int, key: str, hog_n: int) -> dict[str, bytes]:
    """Every HTTP request the bench sends, by kind, as bytes on the wire."""
    from graph_editor.samples import digits_dataset

    pixels = digits_dataset()[0][0].astype("float32")
    values = pixels.tolist()

    def tensor(**changes) -> dict:
        return {"name": "X", "shape": [1, 64], "datatype": "FP32", "data": values, **changes}

    def as_json(*inputs: dict) -> tuple[bytes, None]:
        return json.dumps({"inputs": list(inputs)}).encode(), None

    def as_binary(declared: dict, payload: bytes) -> tuple[bytes, int]:
        header = json.dumps({"inputs": [{**declared, "parameters": declared.get("parameters", {})}]}).encode()
        return header + payload, len(header)

    valid = as_json(tensor())
    raw = pixels.tobytes()
    digits = {
        "valid": valid,
        "wrong_name": as_json(tensor(name="Y")),
        "wrong_dtype": as_json(tensor(datatype="INT32", data=[int(v) for v in values])),
        "wrong_rank": as_json(tensor(shape=[64])),
        "huge_shape": as_json(tensor(shape=[1_000_000_000, 64])),
        "count_mismatch": as_json(tensor(shape=[2, 64])),
        "truncated_json": (valid[0][:len(valid[0]) // 2], None),
        "garbage_body": (random.Random(0).randbytes(256), None),
        "binary_size_lie": as_binary({"name": "X", "shape": [1, 64], "datatype": "FP32",
                                      "parameters": {"binary_data_size": 1_000_000_000}}, raw),
        "binary_short": as_binary({"name": "X", "shape": [1, 64], "datatype": "FP32",
                                   "parameters": {"binary_data_size": 256}}, raw[:128]),
        "binary_huge_shape": as_binary({"name": "X", "shape": [1_000_000_000, 64], "datatype": "FP32",
                                        "parameters": {"binary_data_size": 256}}, raw),
        "overflow_shape": as_json(tensor(shape=[2**62, 4])),
        "negative_shape": as_json(tensor(shape=[-1, 64])),
    }
    requests = {kind: build_request(port, "/v2/models/digits/infer", body, json_size, key)
                for kind, (body, json_size) in digits.items()}
    hog = json.dumps({"inputs": [{"name": "n", "shape": [1, 1], "datatype": "INT64", "data": [hog_n]}]}).encode()
    requests["hog"] = build_request(port, "/v2/models/hog/infer", hog, None, key)
    return requests


def grpc_requests() -> dict[str, bytes]:
    """Malformed ModelInfer requests to digits, serialized (the gateway forwards bytes)."""
    from tritonclient.grpc import service_pb2

    from graph_editor.samples import digits_dataset

    pixels = digits_dataset()[0][0].astype("float32")

    def request(*, name="X", datatype="FP32", shape=(1, 64), raw: bytes | None = pixels.tobytes(),
                contents=None) -> bytes:
        message = service_pb2.ModelInferRequest(model_name="digits")
        tensor = message.inputs.add(name=name, datatype=datatype, shape=list(shape))
        if contents is not None:
            tensor.contents.fp32_contents.extend(contents)
        if raw is not None:
            message.raw_input_contents.append(raw)
        return message.SerializeToString()

    return {
        "grpc_wrong_name": request(name="Y"),
        "grpc_wrong_dtype": request(datatype="FP64"),
        "grpc_raw_short": request(raw=pixels.tobytes()[:128]),
        "grpc_huge_shape": request(shape=(1_000_000_000, 64)),
        "grpc_huge_contents": request(shape=(1_000_000_000, 64), raw=None, contents=pixels.tolist()),
        "grpc_overflow_shape": request(shape=(2**62, 4)),
        "grpc_garbage": random.Random(1).randbytes(256),
    }


def parse_mix(text: str, exclude: set[str]) -> dict[str, float]:
    """--mix "valid=2,malformed=6,grpc=3" -> a weight per request kind (a category's
    weight shared evenly by its kinds, minus the excluded ones)."""
    weights = {}
    for part in filter(None, text.split(",")):
        category, _, weight = part.partition("=")
        if category not in CATEGORIES:
            raise SystemExit(f"--mix: unknown category {category!r} (choose from {', '.join(CATEGORIES)})")
        kinds = [kind for kind in CATEGORIES[category] if kind not in exclude]
        for kind in kinds:
            weights[kind] = float(weight) / len(kinds)
    return {kind: weight for kind, weight in weights.items() if weight > 0}
