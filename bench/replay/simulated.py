"""The replay's slice of the trace, and the simulator's answer on it (bench/keepalive.py)."""
from dataclasses import dataclass

from bench.keepalive import Function, replay
from workers.keepalive import Action, Decision, Policy, policy_for

MIN_ACTIVE_MINUTES = 3
MAX_ACTIVE_SHARE = 0.8
# The keep-alive both policies fall back to, in the simulator as in the deployments.
IDLE_S = 600


def slice_pick(functions: list[Function], *, count: int, start: int, minutes: int) -> list[Function]:
    """The first `count` functions invoked in MIN_ACTIVE_MINUTES to MAX_ACTIVE_SHARE of the
    slice's minutes, cut to the slice."""
    picked = []
    for function in functions:
        counts = function.counts[start:start + minutes]
        active = sum(1 for c in counts if c)
        if MIN_ACTIVE_MINUTES <= active <= minutes * MAX_ACTIVE_SHARE:
            picked.append(Function(name=function.name, memory_mb=function.memory_mb, counts=counts))
            if len(picked) == count:
                break
    return picked


class DecisionLog:
    """Answers as `policy` does and remembers each minute's `decide`, so that a replay tells
    which minutes it counted cold."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.name = policy.name
        self.actions: dict[int, Action] = {}

    def on_invocation(self, deployment_id: object, now: float, *, ends_at: float | None = None) -> Decision:
        return self.policy.on_invocation(deployment_id, now, ends_at=ends_at)

    def decide(self, deployment_id: object, now: float) -> Action:
        action = self.policy.decide(deployment_id, now)
        self.actions[int(now)] = action
        return action

    def state_dump(self, deployment_id: object) -> dict:
        return self.policy.state_dump(deployment_id)

    def state_load(self, deployment_id: object, data: dict) -> None:
        self.policy.state_load(deployment_id, data)


@dataclass
class Simulated:
    cold_minutes: list[int]
    prewarms: int
    actions: dict[int, Action]


def simulate(kind: str, function: Function) -> Simulated:
    """bench.keepalive.replay on one function with a fresh policy (functions do not share
    state, so per function this is the simulator's whole answer)."""
    log = DecisionLog(policy_for(kind, IDLE_S / 60))
    result = replay(log, [function])
    cold = [m for m, c in enumerate(function.counts) if c and log.actions[m] == "unload"]
    assert len(cold) == result.cold_starts
    return Simulated(cold_minutes=cold, prewarms=result.prewarms, actions=log.actions)
