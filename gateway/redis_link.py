"""One pipelined Redis connection per gateway process, on an asyncio protocol and hiredis.

Every command is packed by hiredis and written at once; replies come back in order and
resolve their futures FIFO, so any number of requests share the connection without
waiting for each other. redis-py's asyncio client costs several times more CPU per
command here (connection pool checkout, per-command locks, response callbacks): on the
2-core machines that difference is most of the gateway's budget.

Scripts run by EVALSHA; a Redis that lost its script cache (restart, SCRIPT FLUSH) gets
the body once through EVAL. A lost connection fails the commands in flight with
RedisUnavailable and the next command reconnects."""
import asyncio
import collections
import hashlib
import ssl

import hiredis
from redis.asyncio.connection import (
    SSLConnection,
    UnixDomainSocketConnection,
    parse_url,
)


class RedisUnavailable(Exception):
    """Redis cannot be reached, or the connection broke with the command in flight."""


class RedisReplyError(Exception):
    """Redis answered a command with an error."""


class Script:
    def __init__(self, source: str):
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()


class _Protocol(asyncio.Protocol):
    def __init__(self, link: "RedisLink"):
        self.link = link
        self.reader = hiredis.Reader(encoding="utf-8", errors="replace")
        self.transport: asyncio.Transport | None = None
        self.waiters: collections.deque = collections.deque()
        # Commands held until the end of this pass of the event loop, to go out in one write.
        self.pending: list[bytes] = []
        self.flush_scheduled = False
        # Called with True right after the commands held so far are written (in the same
        # callback, so nothing else runs between), or with False if the connection is lost.
        self.after_write: list = []

    def flush(self) -> None:
        self.flush_scheduled = False
        if self.pending and self.transport is not None:
            self.transport.write(b"".join(self.pending))
        self.pending.clear()
        callbacks, self.after_write = self.after_write, []
        for callback in callbacks:
            callback(True)

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.reader.feed(data)
        waiters = self.waiters
        while (reply := self.reader.gets()) is not False:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(reply)

    def connection_lost(self, exc):
        self.link._lost(self)
        self.pending.clear()
        error = RedisUnavailable(f"the connection to Redis was lost{f': {exc}' if exc else ''}")
        callbacks, self.after_write = self.after_write, []
        for callback in callbacks:
            callback(False)
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_exception(error)


class RedisLink:
    def __init__(self, url: str, connect_timeout: float = 1.0, command_timeout: float = 2.0):
        self.params = parse_url(url)
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self.protocol: _Protocol | None = None
        self.connecting: asyncio.Future | None = None

    async def call(self, *args):
        """Send one command and await its reply."""
        protocol = self.protocol or await self._connect()
        waiter = self.send(protocol, args)
        reply = await asyncio.wait_for(waiter, self.command_timeout)
        if isinstance(reply, hiredis.ReplyError):
            raise RedisReplyError(str(reply))
        return reply

    def send(self, protocol: _Protocol, args, *, now: bool = True) -> asyncio.Future:
        """Queue one command; the reply resolves the returned future. With now=True it is
        written before this returns (with any commands held before it, in order); otherwise
        it goes out at the end of this pass of the event loop, in one write with the other
        requests' commands: under load that saves a system call per request."""
        waiter = asyncio.get_running_loop().create_future()
        protocol.waiters.append(waiter)
        packed = hiredis.pack_command(args)
        if now:
            if protocol.pending:
                protocol.pending.append(packed)
                protocol.flush()
            else:
                protocol.transport.write(packed)
        else:
            protocol.pending.append(packed)
            if not protocol.flush_scheduled:
                protocol.flush_scheduled = True
                asyncio.get_running_loop().call_soon(protocol.flush)
        return waiter

    def send_script(self, protocol: _Protocol, script: Script, keys: tuple, args: tuple, *,
                    now: bool = True) -> asyncio.Future:
        return self.send(protocol, ("EVALSHA", script.sha, len(keys), *keys, *args), now=now)

    async def run_script(self, script: Script, keys: tuple, args: tuple):
        """Run a script; its command leaves with the others of this loop pass. A Redis that
        no longer has the script gets its body once."""
        protocol = self.protocol or await self._connect()
        waiter = self.send_script(protocol, script, keys, args, now=False)
        reply = await asyncio.wait_for(waiter, self.command_timeout)
        if isinstance(reply, hiredis.ReplyError):
            if not str(reply).startswith("NOSCRIPT"):
                raise RedisReplyError(str(reply))
            reply = await self.call("EVAL", script.source, len(keys), *keys, *args)
        return reply

    async def _connect(self) -> _Protocol:
        if self.connecting is None:
            self.connecting = asyncio.ensure_future(self._open())
        try:
            return await asyncio.shield(self.connecting)
        finally:
            if self.connecting is not None and self.connecting.done():
                self.connecting = None

    async def _open(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        params = self.params
        try:
            async with asyncio.timeout(self.connect_timeout):
                if params.get("connection_class") is UnixDomainSocketConnection:
                    _, protocol = await loop.create_unix_connection(lambda: _Protocol(self), params["path"])
                else:
                    tls = ssl.create_default_context() if params.get("connection_class") is SSLConnection else None
                    _, protocol = await loop.create_connection(lambda: _Protocol(self), params.get("host", "localhost"),
                                                               params.get("port", 6379), ssl=tls)
                for command in self._handshake():
                    reply = await self.send(protocol, command)
                    if isinstance(reply, hiredis.ReplyError):
                        protocol.transport.close()
                        raise RedisUnavailable(f"Redis refused {command[0]}: {reply}")
        except (OSError, TimeoutError) as exc:
            raise RedisUnavailable(f"Redis is unreachable: {exc or type(exc).__name__}") from None
        self.protocol = protocol
        return protocol

    def _handshake(self) -> list[tuple]:
        params, commands = self.params, []
        if params.get("password"):
            commands.append(("AUTH", params["username"], params["password"]) if params.get("username")
                            else ("AUTH", params["password"]))
        if params.get("db"):
            commands.append(("SELECT", params["db"]))
        return commands

    def _lost(self, protocol: _Protocol) -> None:
        if self.protocol is protocol:
            self.protocol = None

    def close(self) -> None:
        if self.protocol is not None and self.protocol.transport is not None:
            self.protocol.transport.close()
        self.protocol = None
