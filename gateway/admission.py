"""Admission and completion of gateway requests: one Redis round trip each, in Lua.

`admit` authenticates the key, resolves the deployment, and decides every request-path
limit of the tenant, the deployment and the key at once (payload size, monthly budgets,
the tenant's standing and spend limit, GCRA rates, concurrency leases) with Redis's clock;
see contract/lua/admit.lua. Nothing is counted in this process, so limits stay exact
across any number of gateway processes, and a change an admin makes is in force for the
next request.

`finish_then` releases the leases, adds the request to the monthly counters (its cost, at
the prices admit.lua gave it, to the tenant's spend) and appends its usage event to the
stream, atomically (contract/lua/finish.lua). It is written to Redis before the response
is written to the client: a response never leaves without its usage event already on its
way, so a gateway that dies loses no usage.

A gateway that dies holding leases does not hold them for long: leases expire after
LEASE_TTL_S unless renewed, and each process renews those of its own requests that run
longer than a third of that."""
import asyncio
import logging
import time

import hiredis

from gateway import config
from gateway.coldstart import WAKE_MARKER_MS
from gateway.contract.hashing import hash_api_key
from gateway.contract.keys import key_entry_name
from gateway.contract.scripts import lua_source
from gateway.contract.usage import SEPARATOR
from gateway.errors import refusal, unavailable
from gateway.redis_link import RedisLink, RedisReplyError, RedisUnavailable, Script

log = logging.getLogger("gateway.admission")
ADMIT = Script(lua_source("admit"))
FINISH = Script(lua_source("finish"))
RENEW = Script(lua_source("renew"))
# How the scripts take and give a yes or no.
YES, NO = "1", "0"
ADMITTED = 200
WAKE_MARKER_ARG = str(WAKE_MARKER_MS)


class Admitted:
    """An admitted request: admit.lua's reply (its route, limits and rate fields), and what
    the gateway learns of it on the way. `wake`: this caller queues its cold deployment's
    load; `held_ms`: how long it was held for its deployment to load (None: not held)."""

    __slots__ = ("tenant", "key_id", "deployment_id", "model_version_id", "triton_model", "state", "http_url",
                 "grpc_url", "error", "policy", "ratelimit", "limit", "remaining", "reset", "scopes", "flags",
                 "leased", "period", "wake", "signature", "price_req", "price_ms", "request_id", "started",
                 "held_ms")

    def __init__(self, reply: list, request_id: str):
        (_, _, _, self.tenant, self.key_id, self.deployment_id, self.model_version_id, self.triton_model, self.state,
         self.http_url, self.grpc_url, self.error, self.policy, self.ratelimit, self.limit, self.remaining, self.reset,
         self.scopes, self.flags, self.leased, self.period, wake, self.signature, self.price_req,
         self.price_ms) = reply
        self.wake = wake == YES
        self.request_id = request_id
        self.held_ms = None
        self.started = time.monotonic()

    def rate_headers(self) -> list:
        """The IETF RateLimit fields and the x-ratelimit-* ones, from the tightest rate limit."""
        if not self.policy:
            return []
        return [(b"ratelimit-policy", self.policy.encode()), (b"ratelimit", self.ratelimit.encode()),
                (b"x-ratelimit-limit-requests", self.limit.encode()),
                (b"x-ratelimit-remaining-requests", self.remaining.encode()),
                (b"x-ratelimit-reset-requests", self.reset.encode())]


class Completion:
    """What `finish` records of an answered request: whether it is billed, its compute time,
    and its usage event (gateway/contract/usage.py), the same for HTTP and gRPC."""

    __slots__ = ("admitted", "billable", "compute_us", "event")

    def __init__(self, admitted: Admitted, name: str, proto: str, endpoint: str, status: int, started: float,
                 upstream_ms: float | None, bytes_in: int, bytes_out: int):
        self.admitted = admitted
        self.billable = billable = status == 200 and endpoint == "infer"
        self.compute_us = compute_us = int(upstream_ms * 1000) if billable else 0
        held_ms = admitted.held_ms
        self.event = SEPARATOR.join((
            admitted.request_id, admitted.tenant, admitted.key_id, admitted.deployment_id, name,
            admitted.model_version_id, proto, endpoint, str(status), f"{(time.perf_counter() - started) * 1000:.3f}",
            f"{upstream_ms:.3f}" if upstream_ms is not None else "", str(compute_us),
            "0" if held_ms is None else f"{held_ms:.1f}", str(bytes_in), str(bytes_out), admitted.flags,
            f"{time.time():.6f}"))


class Admission:
    def __init__(self, redis_url: str):
        self.link = RedisLink(redis_url, connect_timeout=config.REDIS_CONNECT_TIMEOUT_S,
                              command_timeout=config.REDIS_COMMAND_TIMEOUT_S)
        self.lease_ms = str(int(config.LEASE_TTL_S * 1000))
        self.in_flight: dict[str, Admitted] = {}
        self.renewer: asyncio.Task | None = None

    def start(self) -> None:
        self.renewer = asyncio.get_running_loop().create_task(self._renew_forever())

    async def admit(self, raw_key: str, name: str, body_size: int, request_id: str, infer: bool) -> Admitted:
        """Admit a request or raise GatewayError: refused (admit.lua says why), or Redis out of reach."""
        key_entry = key_entry_name(hash_api_key(raw_key))
        args = (name, str(body_size), request_id, self.lease_ms, YES if infer else NO, WAKE_MARKER_ARG)
        try:
            reply = await self.link.run_script(ADMIT, (key_entry,), args)
        except (RedisUnavailable, TimeoutError) as exc:
            raise unavailable(str(exc) or "Redis did not answer in time") from None
        if reply[0] != ADMITTED:
            raise refusal(*reply)
        admitted = Admitted(reply, request_id)
        self.in_flight[request_id] = admitted
        return admitted

    def finish_then(self, completion: Completion, after) -> None:
        """Queue the completion with the others of this loop pass; `after(True)` runs right
        after their one write to Redis, in the same callback (that is where the response is
        written or released), `after(False)` if it cannot be written, and the answer is then
        withheld. Redis's reply is checked later. Either way the request is no longer in
        flight here: a completion that was not written leaves leases that expire."""
        admitted = completion.admitted
        self.in_flight.pop(admitted.request_id, None)
        protocol = self.link.protocol
        if protocol is None:
            after(False)
            return
        args = (admitted.request_id, admitted.leased, admitted.scopes, YES if completion.billable else NO,
                str(completion.compute_us), admitted.period, completion.event, admitted.deployment_id,
                admitted.price_req, admitted.price_ms)
        waiter = self.link.send_script(protocol, FINISH, (), args, now=False)
        protocol.after_write.append(after)
        waiter.add_done_callback(lambda done: self._check_reply(done, args))

    def _check_reply(self, done: asyncio.Future, args: tuple) -> None:
        if done.cancelled():
            return
        if done.exception() is not None:
            log.error("usage event %s not confirmed by Redis: %s", args[0], done.exception())
            return
        reply = done.result()
        if isinstance(reply, hiredis.ReplyError):
            if str(reply).startswith("NOSCRIPT") and self.link.protocol is not None:
                retry = self.link.send(self.link.protocol, ("EVAL", FINISH.source, 0, *args))
                retry.add_done_callback(lambda again: self._check_reply(again, args))
            else:
                log.error("usage event %s not recorded: %s", args[0], reply)

    async def ping(self) -> None:
        """Raise GatewayError when Redis cannot be reached."""
        try:
            await self.link.call("PING")
        except (RedisUnavailable, TimeoutError) as exc:
            raise unavailable(str(exc) or "Redis did not answer in time") from None

    async def _renew_forever(self) -> None:
        period = config.LEASE_TTL_S / 3
        while True:
            await asyncio.sleep(period)
            cutoff = time.monotonic() - period
            args = []
            for admitted in list(self.in_flight.values()):
                if admitted.started < cutoff and admitted.leased:
                    args += (admitted.leased, admitted.request_id)
            if args:
                try:
                    await self.link.run_script(RENEW, (), (self.lease_ms, *args))
                except (RedisUnavailable, RedisReplyError, TimeoutError) as exc:
                    log.warning("could not renew %d leases: %s", len(args) // 2, exc)

    async def close(self) -> None:
        if self.renewer is not None:
            self.renewer.cancel()
        self.link.close()
