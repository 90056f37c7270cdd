"""A deployment's scaling and batching settings: their defaults, derived from the target,
and the checks every change of them passes. Plan limits are checked separately
(workers/capacity.py)."""
from gateway.contract.errors import PlatformError
from workers.models import KeepAlive
from workers.triton.repository import DEFAULT_MAX_BATCH_SIZE, DEFAULT_QUEUE_DELAY_US

# Largest values the settings accept, whatever the plan: beyond them a value is a mistake.
MAX_QUEUE_DELAY_US = 10_000_000
MAX_KEEPALIVE_IDLE_S = 7 * 24 * 3600
MAX_REPLICAS = 16


def whole_number_check(value, name: str, minimum: int, maximum: int, code: str = "") -> int:
    # bool is an int, but True is not a number.
    if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value <= maximum:
        raise PlatformError(f"{name} must be a whole number from {minimum} to {maximum}.",
                            code=code or f"invalid_{name}")
    return value


def scaling_validate(values: dict, *, has_batch_dim: bool) -> dict:
    """Check a deployment's scaling and batching settings together (all keys present), for
    a target with or without a batch dimension; returns them, normalised. Plan limits are
    checked separately (quota_check_deployment)."""
    v = dict(values)
    whole_number_check(v["min_instances"], "min_instances", 0, 32767, "invalid_instances")
    whole_number_check(v["max_instances"], "max_instances", 1, 32767, "invalid_instances")
    if v["min_instances"] > v["max_instances"]:
        raise PlatformError(f"min_instances ({v['min_instances']}) cannot exceed max_instances "
                            f"({v['max_instances']}).", code="invalid_instances")
    whole_number_check(v["replicas"], "replicas", 1, MAX_REPLICAS)
    if v["keepalive"] not in KeepAlive.values:
        raise PlatformError(f"Unknown keep-alive policy {v['keepalive']!r}: choose adaptive or fixed.",
                            code="invalid_keepalive")
    whole_number_check(v["keepalive_idle_s"], "keepalive_idle_s", 1, MAX_KEEPALIVE_IDLE_S)
    whole_number_check(v["max_batch_size"], "max_batch_size", 0, 2**31 - 1, "invalid_batch_size")
    if v["max_batch_size"] and not has_batch_dim:
        raise PlatformError("This model has no batch dimension: its max_batch_size must be 0.",
                            code="invalid_batch_size")
    whole_number_check(v["max_queue_delay_us"], "max_queue_delay_us", 0, MAX_QUEUE_DELAY_US, "invalid_batch_size")
    sizes = v["preferred_batch_sizes"]
    if not isinstance(sizes, list) or any(not isinstance(s, int) or isinstance(s, bool) for s in sizes):
        raise PlatformError("preferred_batch_sizes must be a list of whole numbers.", code="invalid_batch_size")
    if sizes and not v["max_batch_size"]:
        raise PlatformError("preferred_batch_sizes need batching: set max_batch_size above 0.",
                            code="invalid_batch_size")
    if any(not 1 <= s <= v["max_batch_size"] for s in sizes):
        raise PlatformError(f"Each preferred batch size must be between 1 and max_batch_size "
                            f"({v['max_batch_size']}).", code="invalid_batch_size")
    v["preferred_batch_sizes"] = sorted(set(sizes))
    return v


def scaling_defaults(*, has_batch_dim: bool) -> dict:
    """Defaults derived from the target: batching when it has a batch dimension, scale to zero."""
    batch = DEFAULT_MAX_BATCH_SIZE if has_batch_dim else 0
    return {"min_instances": 0, "max_instances": 1, "replicas": 1, "keepalive": KeepAlive.ADAPTIVE,
            "keepalive_idle_s": 600, "max_batch_size": batch, "max_queue_delay_us": DEFAULT_QUEUE_DELAY_US if batch
            else 0, "preferred_batch_sizes": []}
