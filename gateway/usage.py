"""Usage events: one XADD to the `usage:events` stream per admitted request.

Events are written after the response went out. The XADDs of requests that finish while
a write is in flight go together in the next pipeline, one round trip for all of them:
per request this costs a fraction of a separate command, and no event waits longer than
one Redis round trip in this process."""
import asyncio
import logging

import redis.asyncio as aioredis

from gateway.directory import USAGE_STREAM

log = logging.getLogger("gateway.usage")


class UsageWriter:
    def __init__(self, redis: aioredis.Redis):
        self.redis = redis
        self.queue: list[dict] = []
        self.flushing: asyncio.Task | None = None

    def emit(self, fields: dict) -> None:
        self.queue.append(fields)
        if self.flushing is None:
            self.flushing = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        try:
            while self.queue:
                batch, self.queue = self.queue, []
                pipe = self.redis.pipeline(transaction=False)
                for fields in batch:
                    pipe.xadd(USAGE_STREAM, fields)
                try:
                    await pipe.execute()
                except Exception as exc:  # metering must never take the data plane down
                    log.error("%d usage events not recorded (first %s): %s", len(batch), batch[0]["rid"], exc)
        finally:
            self.flushing = None

    async def drain(self, timeout: float = 5.0) -> None:
        if self.flushing is not None:
            await asyncio.wait([self.flushing], timeout=timeout)
