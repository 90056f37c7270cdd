"""Triton's health during the noisy-neighbour benchmark, from outside: its health endpoint,
its processes and its log; and the CPU each part of the machine used."""
import os
import re
import signal
import threading
import time
import urllib.request
from collections import Counter

HEALTH_POLL_S = 0.5


def processes() -> dict[int, tuple[str, int]]:
    """pid -> (command name, parent pid) of every process."""
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    head, rest = f.read().rsplit(")", 1)
            except OSError:
                continue
            table[int(entry)] = (head.split("(", 1)[1], int(rest.split()[1]))
    return table


def descendants(table: dict, root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, (_, parent) in table.items():
        children.setdefault(parent, []).append(pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


class TritonWatch(threading.Thread):
    """Polls /v2/health/live every HEALTH_POLL_S and follows the tritonserver process
    (found under the process the stack started, so a supervisor in between is seen too)
    and its model processes, counting failures per phase."""

    def __init__(self, url: str, root_pid: int):
        super().__init__(daemon=True)
        self.url, self.root_pid = url, root_pid
        self.phase = "baseline"
        self.polls: Counter = Counter()
        self.failures: Counter = Counter()
        self.first_failure: tuple[str, float] | None = None
        self.server_pids: list[int] = []
        self.stub_pids: set[int] = set()
        self.phase_started = time.monotonic()
        self.halt = threading.Event()

    def set_phase(self, phase: str) -> None:
        self.phase, self.phase_started = phase, time.monotonic()

    def run(self) -> None:
        while not self.halt.wait(HEALTH_POLL_S):
            phase = self.phase
            try:
                with urllib.request.urlopen(f"{self.url}/v2/health/live", timeout=1) as response:
                    live = response.status == 200
            except OSError:
                live = False
            self.polls[phase] += 1
            if not live:
                self.failures[phase] += 1
                if self.first_failure is None:
                    self.first_failure = (phase, time.monotonic() - self.phase_started)
            table = processes()
            family = descendants(table, self.root_pid) if self.root_pid in table else []
            # A tritonserver whose parent is one too is a fork of the crash handler, not a server.
            servers = [pid for pid in family
                       if table[pid][0] == "tritonserver" and table.get(table[pid][1], ("",))[0] != "tritonserver"]
            for pid in servers:
                if pid not in self.server_pids:
                    self.server_pids.append(pid)
                for stub in descendants(table, pid):
                    if table[stub][0].startswith("triton_python"):
                        self.stub_pids.add(stub)

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=5)


def machine_busy_s() -> float:
    """CPU seconds the whole machine has been busy (all cores), from /proc/stat."""
    with open("/proc/stat") as f:
        ticks = [int(field) for field in f.readline().split()[1:]]
    idle = ticks[3] + ticks[4]  # idle, iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def cpu_delta(before: dict, after: dict) -> dict:
    return {name: round(after[name] - before[name], 2) for name in before}


def triton_report(stack, watch: TritonWatch) -> dict:
    proc = stack.procs["triton"]
    code = proc.poll()
    table = processes()
    family = descendants(table, proc.pid) if proc.pid in table else []
    live_stubs = {pid for pid in family if pid in watch.stub_pids}
    markers = ("bad_alloc", "terminate called", "what():", "Signal (", "Aborted", "Killed", "Stub process")
    # Distinct messages (timestamps and pids aside) with how often each came.
    messages = Counter(re.sub(r"\d+", "N", re.sub(r"\x1b\[[\d;]*m", "", line).strip())[:200]
                       for line in stack.log("triton").splitlines() if any(marker in line for marker in markers))
    return {
        "polls": sum(watch.polls.values()), "failures": sum(watch.failures.values()),
        "failures_by_phase": {phase: watch.failures[phase] for phase in ("baseline", "noise", "after")},
        "first_failure": (f"{watch.first_failure[0]} +{watch.first_failure[1]:.1f} s" if watch.first_failure
                          else None),
        "server_pids": watch.server_pids, "restarts": max(0, len(watch.server_pids) - 1),
        "exit": None if code is None else (signal.Signals(-code).name if code < 0 else f"exit {code}"),
        "stubs_seen": len(watch.stub_pids), "stubs_gone": len(watch.stub_pids - live_stubs),
        "log": [f"{count} x {message}" for message, count in messages.most_common(6)],
    }
