"""A thin wrapper over Triton's HTTP repository and health API for the workers."""
import json
import time
import urllib.error
import urllib.request


class TritonError(RuntimeError):
    pass


class TritonUnreachable(TritonError):
    """The server did not answer at all: transient, worth retrying elsewhere or later."""


def _request(base_url: str, method: str, path: str, body: dict | None = None, timeout: float = 10.0):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base_url.rstrip("/") + path, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            payload = resp.read()
            return resp.status, (json.loads(payload) if payload else None)
    except urllib.error.HTTPError as exc:
        payload = exc.read()
        try:
            message = json.loads(payload).get("error", payload.decode(errors="replace"))
        except ValueError:
            message = payload.decode(errors="replace")
        return exc.code, {"error": message}
    except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
        raise TritonUnreachable(f"Triton at {base_url} is unreachable: {exc}") from exc


def server_live(base_url: str, timeout: float = 2.0) -> bool:
    """Whether the server answers. Liveness, not readiness: with strict readiness (Triton's
    default) /v2/health/ready is 400 while any model loads or unloads, which a server that
    scales models to zero and back does all the time."""
    try:
        status, _ = _request(base_url, "GET", "/v2/health/live", timeout=timeout)
    except TritonError:
        return False
    return status == 200


def model_load(base_url: str, name: str, timeout: float) -> float:
    """Load (or reload) a model; return the seconds it took. Raises TritonError with Triton's reason."""
    started = time.monotonic()
    status, body = _request(base_url, "POST", f"/v2/repository/models/{name}/load", body={}, timeout=timeout)
    if status != 200:
        raise TritonError((body or {}).get("error") or f"load failed with HTTP {status}")
    return time.monotonic() - started


def model_unload(base_url: str, name: str, timeout: float = 30.0) -> None:
    status, body = _request(
        base_url, "POST", f"/v2/repository/models/{name}/unload",
        body={"parameters": {"unload_dependents": False}}, timeout=timeout,
    )
    if status not in (200, 400, 404):
        raise TritonError((body or {}).get("error") or f"unload failed with HTTP {status}")


def model_instances(base_url: str, name: str, timeout: float = 5.0) -> int | None:
    """The instance count a loaded model runs with (its first instance group), or None."""
    status, body = _request(base_url, "GET", f"/v2/models/{name}/config", timeout=timeout)
    if status != 200:
        return None
    groups = (body or {}).get("instance_group") or [{}]
    return int(groups[0].get("count", 1))


def model_ready(base_url: str, name: str, timeout: float = 2.0) -> bool:
    status, _ = _request(base_url, "GET", f"/v2/models/{name}/ready", timeout=timeout)
    return status == 200


def repository_index(base_url: str, timeout: float = 5.0) -> list[dict]:
    status, body = _request(base_url, "POST", "/v2/repository/index", body={"ready": False}, timeout=timeout)
    if status != 200:
        raise TritonError(f"repository index failed with HTTP {status}")
    return body or []


def model_statistics(base_url: str, name: str = "", timeout: float = 5.0) -> list[dict]:
    path = f"/v2/models/{name}/stats" if name else "/v2/models/stats"
    status, body = _request(base_url, "GET", path, timeout=timeout)
    if status != 200:
        raise TritonError(f"statistics failed with HTTP {status}")
    return (body or {}).get("model_stats", [])
