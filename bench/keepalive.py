"""Replay an Azure Functions trace through keep-alive policies.

    python -m bench.keepalive --trace <dir> [--functions N] [--minutes M]

`<dir>` holds the Azure Functions 2019 files: invocations.csv (HashFunction, HashApp,
HashOwner, then per-minute invocation counts) and memory.csv (per app, average
allocated MB). One function is one deployment, with its app's memory.

The model of time, at the trace's one-minute granularity:

- All invocations of a function in minute m are one invocation-minute; it starts at m
  and ends at m + 1, so two invocation-minutes m1 < m2 have an idle time of
  m2 - m1 - 1 minutes (0 for consecutive minutes).
- At the start of every minute m the policy decides (`decide(deployment, m)`) and the
  decision takes effect for the whole of minute m: loading is instantaneous, a
  pre-warm decided for minute m makes the model warm in minute m.
- An invocation-minute whose model is not warm is one cold start; the model is then
  loaded and serves the minute. The first invocation of every function is cold.
- A warm minute without invocations is an idle warm model-minute; times the function's
  memory, idle GB-minutes (MB / 1024). Minutes that serve invocations are not idle.
- A pre-warm is a load that no invocation asked for (a "load" minute after an "unload"
  one); counted, not charged.

Policies: fixed 10 and 60 minutes, and adaptive (the hybrid histogram) learning with
the fixed 10 minutes, as `policy_for` builds them for the autoscaler.

Prints a table per policy and, as its last line, one JSON object keyed by policy.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from workers.keepalive import Policy, policy_for


@dataclass
class Function:
    name: str
    memory_mb: float
    counts: list[int]


@dataclass
class ReplayResult:
    invocations: int = 0
    invocation_minutes: int = 0
    cold_starts: int = 0
    cold_start_share: float = 0.0
    idle_warm_minutes: int = 0
    idle_gb_minutes: float = 0.0
    prewarms: int = 0


def trace_read(trace: Path, *, functions: int | None = None, minutes: int | None = None) -> list[Function]:
    """The first `functions` functions of the trace, each cut to its first `minutes`."""
    with open(trace / "memory.csv", newline="") as f:
        memory = {row["HashApp"]: float(row["AverageAllocatedMb"]) for row in csv.DictReader(f)}
    result = []
    with open(trace / "invocations.csv", newline="") as f:
        reader = csv.reader(f)
        next(reader)
        for row in reader:
            if functions is not None and len(result) >= functions:
                break
            counts = [int(value) for value in row[3:]]
            result.append(Function(name=row[0], memory_mb=memory[row[1]], counts=counts[:minutes]))
    return result


def replay(policy: Policy, functions: list[Function]) -> ReplayResult:
    result = ReplayResult()
    idle_mb_minutes = 0.0
    for function in functions:
        was_warm = False
        for minute, count in enumerate(function.counts):
            action = policy.decide(function.name, minute)
            warm = action != "unload"
            if action == "load" and not was_warm:
                result.prewarms += 1
            if count:
                result.invocations += count
                result.invocation_minutes += 1
                result.cold_starts += not warm
                policy.on_invocation(function.name, minute, ends_at=minute + 1)
                was_warm = True
            else:
                result.idle_warm_minutes += warm
                idle_mb_minutes += warm * function.memory_mb
                was_warm = warm
    result.idle_gb_minutes = round(idle_mb_minutes / 1024, 1)
    if result.invocation_minutes:
        result.cold_start_share = round(result.cold_starts / result.invocation_minutes, 4)
    return result


def policies() -> list[Policy]:
    """The adaptive policy learns with the 10-minute keep-alive it is compared with."""
    return [policy_for("fixed", 10), policy_for("fixed", 60), policy_for("adaptive", 10)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.keepalive", description=__doc__.splitlines()[0])
    parser.add_argument("--trace", type=Path, required=True, help="directory with invocations.csv and memory.csv")
    parser.add_argument("--functions", type=int, default=None, help="replay the first N functions (default all)")
    parser.add_argument("--minutes", type=int, default=None, help="replay the first M minutes (default all)")
    args = parser.parse_args(argv)

    functions = trace_read(args.trace, functions=args.functions, minutes=args.minutes)
    minutes = max((len(function.counts) for function in functions), default=0)
    print(f"{len(functions)} functions, {minutes} minutes, from {args.trace}")
    header = ("policy", "invocations", "inv-minutes", "cold starts", "cold share", "idle warm min", "idle GB-min",
              "prewarms")
    print("{:<14}{:>13}{:>13}{:>13}{:>12}{:>15}{:>14}{:>10}".format(*header))
    results = {}
    for policy in policies():
        r = replay(policy, functions)
        results[policy.name] = asdict(r)
        print(
            f"{policy.name:<14}{r.invocations:>13}{r.invocation_minutes:>13}{r.cold_starts:>13}"
            f"{r.cold_start_share:>12.2%}{r.idle_warm_minutes:>15}{r.idle_gb_minutes:>14.1f}{r.prewarms:>10}"
        )
    print(json.dumps(results, sort_keys=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
