"""Cold starts: a call to a deployment that is scaled to zero (or still loading) is held
here while a worker loads it, then served as usual.

`admit.lua` decides who wakes a cold deployment: the first call to see it cold takes the
`gw:wake:<deployment>` marker (SET NX, WAKE_MARKER_MS) and this process queues the
worker task `deployment_wake`; every other call, in any gateway, only waits. In one
process the calls to a deployment share one watcher, which reads the route from Redis
every POLL_S until the deployment is ready (or failed, or gone). While it stays cold past
the marker's lifetime (the task was lost, say) the watcher takes the marker again.

A call held longer than COLD_START_TIMEOUT_S is answered 503 with Retry-After."""
import asyncio
import logging
import os
import time

from gateway import config
from gateway.contract.keys import heal_marker_name, route_entry_name, wake_marker_name

log = logging.getLogger("gateway.coldstart")
POLL_S = 0.005
WAKE_MARKER_MS = 10_000
WAKE_TASK = "workers.tasks.deployment_wake"
# A deployment whose runner died is reloaded by this task, at most once per marker lifetime.
HEAL_TASK = "workers.tasks.deployment_reconfigure"
HEAL_MARKER_MS = 10_000
WAKING_STATES = ("cold", "loading", "pending")
ROUTE_FIELDS = ("state", "http_url", "grpc_url", "triton_model", "error")


class HoldTimeout(Exception):
    pass


class ColdStarts:
    def __init__(self, link):
        self.link = link
        self.watchers: dict[str, asyncio.Future] = {}
        self.deadlines: dict[str, float] = {}
        self.celery = None

    async def hold(self, admitted, name: str) -> float:
        """Wait until the admitted request's deployment is routable; update `admitted`
        with the fresh route. Returns the milliseconds held. Raises HoldTimeout."""
        started = time.perf_counter()
        deployment_id = admitted.deployment_id
        if admitted.wake:
            self.wake(deployment_id)
        deadline = time.monotonic() + config.COLD_START_TIMEOUT_S
        self.deadlines[deployment_id] = max(self.deadlines.get(deployment_id, 0), deadline)
        watcher = self.watchers.get(deployment_id)
        if watcher is None or watcher.done():
            route_key = route_entry_name(admitted.tenant, name)
            watcher = asyncio.ensure_future(self._watch(deployment_id, route_key))
            self.watchers[deployment_id] = watcher
        try:
            route = await asyncio.wait_for(asyncio.shield(watcher), deadline - time.monotonic())
        except TimeoutError:
            raise HoldTimeout() from None
        if route is None:
            raise HoldTimeout()
        (admitted.state, admitted.http_url, admitted.grpc_url, admitted.triton_model, admitted.error) = route
        return (time.perf_counter() - started) * 1000

    async def _watch(self, deployment_id: str, route_key: str):
        """The route once it leaves the waking states (None when every waiter's time is up)."""
        marker_at = time.monotonic()
        try:
            while time.monotonic() < self.deadlines.get(deployment_id, 0):
                route = await self.link.call("HMGET", route_key, *ROUTE_FIELDS)
                route = [value.decode() if isinstance(value, bytes) else (value or "") for value in route]
                state = route[0]
                if state not in WAKING_STATES:
                    return route
                if state == "cold" and time.monotonic() - marker_at > WAKE_MARKER_MS / 1000:
                    marker_at = time.monotonic()
                    taken = await self.link.call("SET", wake_marker_name(deployment_id), "1", "NX", "PX",
                                                 WAKE_MARKER_MS)
                    if taken:
                        self.wake(deployment_id)
                await asyncio.sleep(POLL_S)
            return None
        finally:
            self.deadlines.pop(deployment_id, None)
            self.watchers.pop(deployment_id, None)

    def release(self, admitted) -> None:
        """The caller that took the wake marker will not wait for the load (its request was
        refused): give the marker back, so that the next caller wakes the deployment."""
        if not admitted.wake:
            return
        admitted.wake = False
        asyncio.ensure_future(self._release(admitted.deployment_id))

    async def _release(self, deployment_id: str) -> None:
        try:
            await self.link.call("DEL", wake_marker_name(deployment_id))
        except Exception as exc:  # the marker then expires by itself
            log.warning("wake marker of deployment %s not released: %s", deployment_id, exc)

    def heal(self, deployment_id: str) -> None:
        """The deployment's runner process died (Triton keeps the model "ready" but answers
        every request with an error until it is loaded again): have a worker reload it,
        once per HEAL_MARKER_MS whatever the number of callers and gateways."""
        asyncio.ensure_future(self._heal(deployment_id))

    async def _heal(self, deployment_id: str) -> None:
        try:
            if await self.link.call("SET", heal_marker_name(deployment_id), "1", "NX", "PX", HEAL_MARKER_MS):
                log.warning("deployment %s: its runner is not healthy; queueing a reload", deployment_id)
                asyncio.get_running_loop().run_in_executor(None, self._send, HEAL_TASK, int(deployment_id))
        except Exception as exc:
            log.warning("reload of deployment %s not queued: %s", deployment_id, exc)

    def wake(self, deployment_id: str) -> None:
        """Queue the worker task that loads the deployment (in a thread: the broker client blocks)."""
        asyncio.get_running_loop().run_in_executor(None, self._send, WAKE_TASK, int(deployment_id))

    def _broker(self):
        if self.celery is None:
            from celery import Celery

            self.celery = Celery("gateway", broker=os.environ.get("CELERY_BROKER_URL", config.REDIS_URL))
        return self.celery

    def _send(self, task: str, deployment_id: int) -> None:
        try:
            self._broker().send_task(task, args=[deployment_id], queue="control")
        except Exception:
            log.exception("could not queue %s of deployment %s", task, deployment_id)

    def connect(self) -> None:
        """Open the broker connection ahead of the first cold start."""
        asyncio.get_running_loop().run_in_executor(None, self._connect)

    def _connect(self) -> None:
        try:
            with self._broker().producer_or_acquire() as producer:
                producer.connection.ensure_connection(max_retries=1)
        except Exception as exc:
            log.warning("broker connection not opened ahead: %s", exc)
