"""The gateway's request path, whatever the protocol. HTTP (gateway/http_api.py) and gRPC
(gateway/grpc_server.py) each parse and write their own wire format and leave the rest to
one `Core` per process, in this order:

- `admission.admit`: one Redis round trip authenticates the key, resolves the deployment
  and decides every limit (gateway/admission.py);
- `check`: an inference request against its deployment's signature before Triton sees it
  (gateway/signature.py);
- `ready`: a request to a cold deployment is held while it loads (gateway/coldstart.py),
  then one that cannot be served is refused;
- `send`: to the replica with the fewest requests outstanding from this process, counted
  over both protocols alike; a replica that refuses the connection is skipped and the
  next one tried;
- `triton_refusal`: the Triton errors that mean the same whatever the protocol, a dead
  runner having its deployment reloaded;
- `admission.finish_then`: the completion (admission.Completion), written to Redis before
  the answer leaves.

Every error is a GatewayError (gateway/errors.py), which each protocol writes in its
own shape."""
import time

from gateway import config
from gateway.admission import Admission, Admitted
from gateway.coldstart import WAKING_STATES, ColdStarts, HoldTimeout
from gateway.errors import GatewayError, Unreached, not_ready, unavailable
from gateway.redis_link import RedisReplyError, RedisUnavailable
from gateway.signature import InvalidRequest, signature

# What the gateway says of itself (KServe v2 server metadata), over either protocol.
SERVER_METADATA = {"name": "inference-platform-gateway", "version": "1.0", "extensions": ["binary_tensor_data"]}


class Replicas:
    """Which replica of a deployment gets a request: the one with the fewest requests
    outstanding from this process. A server that refused a connection is skipped for
    DOWN_S (the workers' health check takes it out of the routes within seconds). A
    replica is known by the address a protocol reaches it at (its HTTP URL, its gRPC
    host:port)."""

    DOWN_S = 3.0

    def __init__(self):
        self.outstanding: dict[str, int] = {}
        self.down_until: dict[str, float] = {}

    def pick(self, urls: str, exclude: str = "") -> str | None:
        best, best_count = None, None
        now = time.monotonic() if self.down_until else 0.0
        for url in urls.split(" ") if " " in urls else (urls,):
            if not url or url == exclude or (now and self.down_until.get(url, 0.0) > now):
                continue
            count = self.outstanding.get(url, 0)
            if best_count is None or count < best_count:
                best, best_count = url, count
        return best

    def down(self, url: str) -> None:
        self.down_until[url] = time.monotonic() + self.DOWN_S


def server_unavailable(name: str) -> GatewayError:
    return GatewayError(f"The inference server of deployment '{name}' is not answering; it is being replaced, "
                        "retry shortly.", code="server_unavailable")


def runner_died(message: str) -> bool:
    """Triton's answer when a model's Python-backend stub process is gone."""
    return "Stub process" in message and "is not healthy" in message


def runner_restarting(name: str) -> GatewayError:
    return GatewayError(f"The runner process of deployment '{name}' stopped; it is being restarted, retry shortly.",
                        code="runner_restarting")


def model_missing(name: str, version: str) -> GatewayError:
    """Triton does not hold the deployment's model, or not that version of it."""
    if version:
        return GatewayError(f"Deployment '{name}' has no version {version}.", code="not_found")
    return not_ready(f"Deployment '{name}' is not loaded on its server yet; retry shortly.")


class Core:
    """What a gateway process shares between its protocols: admission and completion, cold
    starts, and the replicas' outstanding counts."""

    def __init__(self):
        self.admission: Admission | None = None
        self.coldstarts: ColdStarts | None = None
        self.replicas = Replicas()

    async def startup(self) -> None:
        self.admission = Admission(config.REDIS_URL)
        self.admission.start()
        self.coldstarts = ColdStarts(self.admission.link)
        self.coldstarts.connect()

    async def shutdown(self) -> None:
        await self.admission.close()

    def check(self, admitted: Admitted, name: str, check, *args) -> None:
        """Check an inference request against its deployment's signature before Triton sees
        it: `check(signature, *args)` raises InvalidRequest naming the input and what is
        wrong, answered 400. It runs before a cold deployment is woken, so a refused request
        wakes nothing."""
        if not admitted.deployment_id:
            return  # `ready` answers 404
        checked = signature(admitted.signature)
        try:
            if checked is None:
                raise not_ready(f"Deployment '{name}' is being published; retry shortly.")
            check(checked, *args)
        except InvalidRequest as exc:
            self.coldstarts.release(admitted)
            raise GatewayError(str(exc), code="invalid_input") from None
        except GatewayError:
            self.coldstarts.release(admitted)
            raise

    async def ready(self, admitted: Admitted, name: str, hold: bool = True) -> None:
        """Hold a request to a cold (or loading) deployment until it is ready, for at most
        COLD_START_TIMEOUT_S; then refuse what cannot be served. Readiness questions are
        not held (hold=False): a deployment that is not loaded is not ready."""
        if hold and admitted.state in WAKING_STATES and admitted.deployment_id:
            started = time.perf_counter()
            try:
                admitted.held_ms = await self.coldstarts.hold(admitted, name)
            except HoldTimeout:
                # A cold start all the same: the usage event says how long it was held.
                admitted.held_ms = (time.perf_counter() - started) * 1000
                raise GatewayError(f"Deployment '{name}' is still loading after {config.COLD_START_TIMEOUT_S:g} s; "
                                   "retry shortly.", code="cold_start_timeout") from None
            except (RedisUnavailable, RedisReplyError, TimeoutError) as exc:
                raise unavailable(str(exc) or "Redis did not answer in time") from None
        if not admitted.deployment_id:
            raise GatewayError(f"No deployment named '{name}' in your tenant.", code="not_found")
        state = admitted.state
        if state == "failed":
            raise GatewayError(f"Deployment '{name}' failed to load: {admitted.error}", code="deployment_failed")
        if state != "ready":
            raise not_ready(f"Deployment '{name}' is {state or 'not ready'}; retry shortly.")

    async def ready_again(self, admitted: Admitted, name: str) -> bool:
        """Triton no longer has the model the route named: if the deployment went cold (or
        is reloading) since admission, hold the request until it is back. True when it is
        (its route, replicas included, is then the fresh one)."""
        admitted.state = "cold"
        try:
            await self.ready(admitted, name)
        except GatewayError:
            return False
        return True

    async def send(self, name: str, urls: str, call, *args):
        """`await call(url, *args)` on the replica among `urls` (space-separated) with the
        fewest requests outstanding; the request counts as outstanding there until it ends,
        however it ends. A replica that cannot be reached (`call` raises Unreached) is
        skipped and another one tried; with none left, a quick 503. Any other error of
        `call` is the caller's to translate."""
        replicas = self.replicas
        outstanding = replicas.outstanding
        tried = ""
        for _ in range(2):
            url = replicas.pick(urls, exclude=tried)
            if url is None:
                break
            outstanding[url] = outstanding.get(url, 0) + 1
            try:
                return await call(url, *args)
            except Unreached:
                replicas.down(url)
                tried = url
            finally:
                outstanding[url] -= 1
        raise server_unavailable(name)

    def triton_refusal(self, admitted: Admitted, name: str, version: str, message: str,
                       missing: bool) -> GatewayError | None:
        """What a Triton error (its message already in the caller's names) means whatever
        the protocol, or None when only the protocol can tell. `missing`: Triton does not
        have the model. A runner process that died has its deployment reloaded."""
        if missing:
            return model_missing(name, version)
        if runner_died(message):
            self.coldstarts.heal(admitted.deployment_id)
            return runner_restarting(name)
        if "not ready" in message:
            return not_ready(f"Deployment '{name}' is not ready: {message}")
        return None


core = Core()
