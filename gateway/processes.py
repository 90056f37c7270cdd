"""The gateway's processes: `serve(host, port, workers)` serves in this process, or keeps
`workers` forked processes serving the same ports (SO_REUSEPORT) while the parent only
forks, reaps and forwards signals.

A worker process that dies is started again, RESPAWN_DELAY_S later, the delay doubling up
to RESPAWN_DELAY_MAX_S while it keeps dying within STABLE_AFTER_S of its start. Every
worker dies with the parent (PR_SET_PDEATHSIG, SIGTERM): a parent killed with SIGKILL
leaves no process holding the ports, and the supervisor that starts it again does not
double them. SIGTERM or SIGINT stops accepting, lets requests in flight finish (up to
10 s), then closes the gateway's connections. Keep-alive connections idle for
GATEWAY_IDLE_TIMEOUT_S are closed."""
import asyncio
import ctypes
import logging
import os
import signal
import socket
import time

import uvloop

from gateway import config, lifecycle
from gateway.server import HttpProtocol

log = logging.getLogger("gateway.processes")
RESPAWN_DELAY_S = 0.2
RESPAWN_DELAY_MAX_S = 5.0
STABLE_AFTER_S = 10.0
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


async def run_process(sock: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    connections: set = set()
    grpc_server = await lifecycle.startup()
    server = await loop.create_server(lambda: HttpProtocol(connections), sock=sock, backlog=2048)
    stop = asyncio.Event()
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, stop.set)
    sweeper = loop.create_task(close_idle(connections))
    await stop.wait()
    sweeper.cancel()
    server.close()
    deadline = loop.time() + 10
    while any(c.busy for c in connections) and loop.time() < deadline:
        await asyncio.sleep(0.05)
    for connection in list(connections):
        connection.transport.close()
    await lifecycle.shutdown(grpc_server)


async def close_idle(connections: set) -> None:
    """Close keep-alive connections that have had nothing in progress for GATEWAY_IDLE_TIMEOUT_S."""
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(config.IDLE_TIMEOUT_S / 3)
        cutoff = loop.time() - config.IDLE_TIMEOUT_S
        for connection in list(connections):
            if not connection.busy and not connection.queue and connection.last_active < cutoff:
                connection.closing = True
                connection.transport.close()


def listening_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def serve(host: str, port: int, workers: int) -> None:
    """Serve until SIGTERM/SIGINT: in this process, or in `workers` forked ones."""
    if workers <= 1:
        uvloop.run(run_process(listening_socket(host, port)))
        return
    Workers(host, port, workers).run()


def die_with_parent(signum: int) -> None:
    """Have the kernel send `signum` to this process when its parent exits (Linux)."""
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signum), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")


def exit_description(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"was killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exited with status {os.waitstatus_to_exitcode(status)}"


class Workers:
    """The parent of the worker processes. Child exits and stop signals are blocked and
    taken with sigtimedwait, so none is lost between two checks."""

    def __init__(self, host: str, port: int, count: int):
        self.host, self.port, self.count = host, port, count
        self.pid = os.getpid()
        self.running: dict[int, tuple[int, float]] = {}  # pid -> (slot, started at)
        self.delays = [RESPAWN_DELAY_S] * count  # per slot, the next respawn's
        self.due: dict[int, float] = {}  # slot -> when it is started again
        self.stopping = False
        self.mask: set = set()

    def run(self) -> None:
        waited = {signal.SIGCHLD, *STOP_SIGNALS}
        self.mask = signal.pthread_sigmask(signal.SIG_BLOCK, waited)
        for slot in range(self.count):
            self.start(slot)
        while self.running or (self.due and not self.stopping):
            timeout = max(0.0, min(self.due.values()) - time.monotonic()) if self.due else 60.0
            info = signal.sigtimedwait(waited, timeout)
            if info is not None and info.si_signo in STOP_SIGNALS:
                self.stop(info.si_signo)
            self.reap()
            now = time.monotonic()
            for slot, when in list(self.due.items()):
                if when <= now:
                    del self.due[slot]
                    self.start(slot)

    def start(self, slot: int) -> None:
        pid = os.fork()
        if pid:
            self.running[pid] = (slot, time.monotonic())
            return
        code = 1
        try:
            signal.pthread_sigmask(signal.SIG_SETMASK, self.mask)
            die_with_parent(signal.SIGTERM)
            if os.getppid() == self.pid:  # else the parent died before prctl took effect
                uvloop.run(run_process(listening_socket(self.host, self.port)))
            code = 0
        except Exception:
            log.exception("gateway process %d failed", os.getpid())
        finally:
            os._exit(code)

    def reap(self) -> None:
        while self.running:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            slot, started = self.running.pop(pid, (None, 0.0))
            if slot is None or self.stopping:
                continue
            lived = time.monotonic() - started
            delay = RESPAWN_DELAY_S if lived >= STABLE_AFTER_S else self.delays[slot]
            self.delays[slot] = min(delay * 2, RESPAWN_DELAY_MAX_S)
            self.due[slot] = time.monotonic() + delay
            log.warning("gateway process %d %s after %.1f s; starting another in %.1f s", pid,
                        exit_description(status), lived, delay)

    def stop(self, signum: int) -> None:
        self.stopping = True
        self.due.clear()
        for pid in self.running:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass
