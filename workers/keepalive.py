"""Keep-alive policies: when to unload an idle deployment and when to load it again.

Pure code for the autoscaler and for trace replays (workers.keepalive_replay): no
Django, no clock of its own. Time is a number of minutes, passed in by the caller.

A policy hears of every invocation (`on_invocation`) and answers with a `Decision`
relative to the end of that invocation; `decide` then says at any later time whether
the deployment should be resident:

- "keep":   resident, inside the keep-alive that follows an invocation;
- "load":   resident, inside a pre-warm window (load it if it is not loaded);
- "unload": not resident (never invoked, between unload and pre-warm, or expired).

`FixedKeepAlive(minutes)` is the state of the practice (AWS Lambda 10 min, Azure
Functions 20 min). `HybridHistogram` is the hybrid histogram policy of Shahrad et al.,
"Serverless in the Wild: Characterizing and Optimizing the Serverless Workload at a
Large Cloud Provider", USENIX ATC 2020, section 4, without its ARIMA branch (see the
class docstring).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, Protocol

Action = Literal["load", "unload", "keep"]

# Hybrid histogram parameters. HEAD, TAIL, the 10% margin, 1-minute bins over a
# 4-hour range are the paper's as we recall them (its section 4 text was not at hand
# when this was written, only summaries of it). The paper calls a histogram
# representative when the coefficient of variation of its bin counts is high;
# REPRESENTATIVE_CV = 2 is our threshold: a histogram concentrated in a few bins is far
# above it (one bin: sqrt(239)), a flat one over 240 bins sits near sqrt(240 / samples),
# below 2 from 60 samples on. MIN_SAMPLES and OUT_OF_BOUNDS_SHARE are ours too, see
# HybridHistogram.
HISTOGRAM_RANGE_MINUTES = 240
BIN_MINUTES = 1
HEAD_PERCENTILE = 5
TAIL_PERCENTILE = 99
MARGIN = 0.10
REPRESENTATIVE_CV = 2.0
MIN_SAMPLES = 10
OUT_OF_BOUNDS_SHARE = 0.5


@dataclass(frozen=True)
class Decision:
    """What to do after an invocation that ended at `unload_after` (pre-warm) or
    before it (keep-alive), all in absolute minutes.

    `prewarm_at` None: stay resident until `keep_until` (then unload_after == keep_until).
    Otherwise: unload at `unload_after`, load again at `prewarm_at`, stay until
    `keep_until`."""

    unload_after: float
    prewarm_at: float | None
    keep_until: float

    def action(self, now: float) -> Action:
        if now >= self.keep_until:
            return "unload"
        if self.prewarm_at is None or now < self.unload_after:
            return "keep"
        return "load" if now >= self.prewarm_at else "unload"


class Policy(Protocol):
    name: str

    def on_invocation(self, deployment_id: object, now: float, *, ends_at: float | None = None) -> Decision:
        """Record an invocation that started at `now` and ends at `ends_at` (default
        `now`); return the window that follows it."""
        ...

    def decide(self, deployment_id: object, now: float) -> Action:
        """Whether the deployment should be resident at `now`."""
        ...


@dataclass
class _Deployments:
    """The last decision per deployment; what `decide` answers from."""

    decisions: dict[object, Decision] = field(default_factory=dict)

    def decide(self, deployment_id: object, now: float) -> Action:
        decision = self.decisions.get(deployment_id)
        return "unload" if decision is None else decision.action(now)


class FixedKeepAlive:
    """Keep a deployment resident for `minutes` after each invocation ends."""

    def __init__(self, minutes: float) -> None:
        self.minutes = minutes
        self.name = f"fixed_{minutes:g}min"
        self._deployments = _Deployments()

    def on_invocation(self, deployment_id: object, now: float, *, ends_at: float | None = None) -> Decision:
        end = now if ends_at is None else ends_at
        decision = Decision(unload_after=end + self.minutes, prewarm_at=None, keep_until=end + self.minutes)
        self._deployments.decisions[deployment_id] = decision
        return decision

    def decide(self, deployment_id: object, now: float) -> Action:
        return self._deployments.decide(deployment_id, now)


@dataclass
class IdleHistogram:
    """Idle times (end of one invocation to the start of the next) in `bin_minutes`
    bins over [0, range_minutes); longer ones are only counted, as out of bounds."""

    range_minutes: int = HISTOGRAM_RANGE_MINUTES
    bin_minutes: int = BIN_MINUTES
    bins: list[int] = field(default_factory=list)
    out_of_bounds: int = 0

    def __post_init__(self) -> None:
        if not self.bins:
            self.bins = [0] * (self.range_minutes // self.bin_minutes)

    def add(self, idle_minutes: float) -> None:
        index = math.floor(max(idle_minutes, 0.0) / self.bin_minutes)
        if index < len(self.bins):
            self.bins[index] += 1
        else:
            self.out_of_bounds += 1

    @property
    def in_bounds(self) -> int:
        return sum(self.bins)

    @property
    def samples(self) -> int:
        return self.in_bounds + self.out_of_bounds

    def percentile_bin(self, percentile: float) -> int:
        """Index of the first bin at which the cumulative in-bound count reaches
        `percentile` % of the in-bound idle times."""
        target = percentile / 100 * self.in_bounds
        cumulative = 0
        for index, count in enumerate(self.bins):
            cumulative += count
            if cumulative > 0 and cumulative >= target - 1e-9:
                return index
        return len(self.bins) - 1

    def head_minutes(self, percentile: float = HEAD_PERCENTILE) -> float:
        """Lower edge of the head percentile's bin: pre-warm no later than this."""
        return self.percentile_bin(percentile) * self.bin_minutes

    def tail_minutes(self, percentile: float = TAIL_PERCENTILE) -> float:
        """Upper edge of the tail percentile's bin: keep alive at least this long."""
        return (self.percentile_bin(percentile) + 1) * self.bin_minutes

    def cv(self) -> float:
        """Coefficient of variation (population) of the bin counts: 0 for a flat
        histogram, sqrt(bins - 1) when every idle time falls in one bin."""
        total = self.in_bounds
        if total == 0:
            return 0.0
        mean = total / len(self.bins)
        variance = sum((count - mean) ** 2 for count in self.bins) / len(self.bins)
        return math.sqrt(variance) / mean

    def out_of_bounds_share(self) -> float:
        return self.out_of_bounds / self.samples if self.samples else 0.0


@dataclass
class _HistogramState:
    histogram: IdleHistogram
    last_end: float | None = None


class HybridHistogram:
    """The hybrid histogram policy (Shahrad et al., ATC 2020, section 4).

    Per deployment, a histogram of idle times (1-minute bins over 4 hours). After each
    invocation:

    - too many idle times out of bounds (share >= `out_of_bounds_share`): the paper
      forecasts the next idle time with ARIMA; here we fall back to the generous
      keep-alive below instead (no time-series model in this module);
    - histogram not representative (fewer than `min_samples` idle times, or the CV of
      its bin counts below `representative_cv`, i.e. a flat pattern): the generous
      keep-alive, the paper's "standard" policy with the histogram's range: no
      pre-warm, resident for `range_minutes` after the invocation;
    - otherwise: unload at once, pre-warm at the head (5th percentile) minus `margin`,
      stay resident until the tail (99th percentile) plus `margin`; when the head is
      0, simply stay resident until the tail.

    `min_samples` is not in the paper, which evaluates on weeks of history: with a
    handful of idle times in 240 bins the CV is high whatever the pattern (one sample
    gives sqrt(239)), so the CV test alone would trust a histogram of one.
    `out_of_bounds_share` is ours too (the paper's threshold is not given here): half
    of the idle times beyond the range means the histogram describes the minority.
    """

    def __init__(
        self,
        *,
        range_minutes: int = HISTOGRAM_RANGE_MINUTES,
        bin_minutes: int = BIN_MINUTES,
        head_percentile: float = HEAD_PERCENTILE,
        tail_percentile: float = TAIL_PERCENTILE,
        margin: float = MARGIN,
        representative_cv: float = REPRESENTATIVE_CV,
        min_samples: int = MIN_SAMPLES,
        out_of_bounds_share: float = OUT_OF_BOUNDS_SHARE,
    ) -> None:
        self.range_minutes = range_minutes
        self.bin_minutes = bin_minutes
        self.head_percentile = head_percentile
        self.tail_percentile = tail_percentile
        self.margin = margin
        self.representative_cv = representative_cv
        self.min_samples = min_samples
        self.out_of_bounds_share = out_of_bounds_share
        self.name = "adaptive"
        self._states: dict[object, _HistogramState] = {}
        self._deployments = _Deployments()

    def histogram(self, deployment_id: object) -> IdleHistogram:
        return self._state(deployment_id).histogram

    def _state(self, deployment_id: object) -> _HistogramState:
        state = self._states.get(deployment_id)
        if state is None:
            state = _HistogramState(IdleHistogram(self.range_minutes, self.bin_minutes))
            self._states[deployment_id] = state
        return state

    def pattern(self, deployment_id: object) -> Literal["out_of_bounds", "unrepresentative", "histogram"]:
        histogram = self.histogram(deployment_id)
        if histogram.samples and histogram.out_of_bounds_share() >= self.out_of_bounds_share:
            return "out_of_bounds"
        if histogram.samples < self.min_samples or histogram.cv() < self.representative_cv:
            return "unrepresentative"
        return "histogram"

    def on_invocation(self, deployment_id: object, now: float, *, ends_at: float | None = None) -> Decision:
        end = now if ends_at is None else ends_at
        state = self._state(deployment_id)
        if state.last_end is not None:
            state.histogram.add(now - state.last_end)
        state.last_end = end if state.last_end is None else max(end, state.last_end)
        decision = self._window(deployment_id, end)
        self._deployments.decisions[deployment_id] = decision
        return decision

    def _window(self, deployment_id: object, end: float) -> Decision:
        if self.pattern(deployment_id) != "histogram":
            until = end + self.range_minutes
            return Decision(unload_after=until, prewarm_at=None, keep_until=until)
        histogram = self.histogram(deployment_id)
        head = histogram.head_minutes(self.head_percentile) * (1 - self.margin)
        tail = histogram.tail_minutes(self.tail_percentile) * (1 + self.margin)
        if head <= 0:
            return Decision(unload_after=end + tail, prewarm_at=None, keep_until=end + tail)
        return Decision(unload_after=end, prewarm_at=end + head, keep_until=end + tail)

    def decide(self, deployment_id: object, now: float) -> Action:
        return self._deployments.decide(deployment_id, now)
