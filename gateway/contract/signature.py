"""The signature text a route carries (field `sig` of gw:route:*): what the gateway checks
a deployment's requests against (gateway/signature.py), written by the control plane.

The text is JSON: {"mb": max batch size (0: not batched), "in": [[name, datatype, dims]],
"out": [names]}, dims as clients send them, -1 for the batch dim."""
import json


def signature_text(*, inputs: list[dict], outputs: list[dict], has_batch_dim: bool, max_batch_size: int) -> str:
    """The signature the gateway checks requests against, as the route carries it: the
    shapes clients send (Triton's view: a batched model takes [batch, *dims], a per-item
    scalar is [batch, 1], a non-batched scalar is [1])."""
    batched = has_batch_dim and max_batch_size > 0

    def dims(shape: list[int]) -> list[int]:
        inner = shape[1:] if batched else shape
        return ([-1] if batched else []) + (inner or [1])

    return json.dumps({
        "mb": max_batch_size if batched else 0,
        "in": [[s["name"], s["datatype"], dims(s["shape"])] for s in inputs],
        "out": [s["name"] for s in outputs],
    }, separators=(",", ":"))
