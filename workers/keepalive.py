"""Keep-alive policies: when to unload an idle deployment and when to load it again.

Pure code for the autoscaler and for trace replays (bench.keepalive): no
Django, no clock of its own. Time is a number of minutes, passed in by the caller.

A policy hears of every invocation (`on_invocation`) and answers with a `Decision`
relative to the end of that invocation; `decide` then says at any later time whether
the deployment should be resident:

- "keep":   resident, inside the keep-alive that follows an invocation;
- "load":   resident, inside a pre-warm window (load it if it is not loaded);
- "unload": not resident (never invoked, between unload and pre-warm, or expired).

The autoscaler builds a policy per pass with `policy_for(kind, idle_minutes)` and keeps
each deployment's state between passes with `state_dump` / `state_load` (a JSON object).

`FixedKeepAlive(minutes)` is the state of the practice (AWS Lambda 10 min, Azure
Functions 20 min). `HybridHistogram` is the hybrid histogram policy of Shahrad et al.,
"Serverless in the Wild: Characterizing and Optimizing the Serverless Workload at a
Large Cloud Provider", USENIX ATC 2020, section 4.

What the paper says. Its own text (section 4.2) was not at hand; what follows agrees
across the secondary sources we read: ziliuziliu's section-by-section notes on the
paper (GitHub Pages post "Serverless in the Wild"), M. Shilkov's review "Eliminate Cold
Starts by Predicting Invocations of Serverless Functions" (mikhail.io, 2020), and the
implementations in osukhoroslov/dslab (dslab-faas-extra/src/hybrid_histogram.rs), in
OpenDC's serverless HybridHistogramPolicy and in a reproduction whose docstring says it
was checked against arXiv:2003.03423, section 4.2.

- Pre-warming window: how long the policy waits after an execution ends before loading
  the application again. Keep-alive window: how long the application stays loaded once
  loaded, by that pre-warm or by an invocation.
- Range-limited histogram, per application, of idle times (end of one execution to the
  start of the next): 1-minute bins over 4 hours; longer idle times are counted as
  out of bounds (OOB).
- Head = 5th percentile, rounded down to its bin; tail = 99th percentile, rounded up
  (Shilkov writes 95th; the notes and the implementations 99th). Pre-warming window =
  head less a 10% margin; the keep-alive ends at the tail plus a 10% margin. A head of
  0 means: do not unload after the execution, keep alive until the tail.
- The histogram is trusted only when representative: the coefficient of variation of
  its bin counts is at least a threshold (2 wherever a source gives a number; a peaked
  histogram has a high CV, a flat one a low CV) and enough idle times were seen (no
  number given). Otherwise "standard keep-alive": no pre-warm, keep alive for the
  histogram's range (4 hours).
- Too many idle times out of bounds (no threshold given): an ARIMA forecast of the next
  idle time; pre-warm at the forecast less 15%, keep alive until the forecast plus 15%.

Where we deviate, and why:

- Learning (fewer than MIN_SAMPLES idle times) and out of bounds: the deployment's
  fixed keep-alive (`fallback_minutes`, the platform's keepalive_idle_s) instead of
  4 hours, and no ARIMA. The paper evaluates on weeks of history, where learning is
  rare; here every new deployment learns, and keeping a model resident for 4 hours
  after each of its first calls cost more than all the rest (44,116 of 103,610 idle
  minutes on the Azure day). With no usable histogram the honest default is what the
  deployment would get without this policy. Out of bounds says the next call most
  likely comes after the range, so holding the model for the range is mostly waste;
  without a time-series model the fixed keep-alive is the neutral choice.
- A flat histogram (enough samples, CV below 2) keeps the paper's 4-hour standard
  keep-alive: that is evidence that idle times spread over the range, which a short
  keep-alive would mostly miss.
- Head 0 with a gap behind bin 0: the paper keeps the deployment resident from the end
  of the call to the tail. We stay resident through bin 0 (one bin after the end, the
  idle times a per-bin decision can only serve by not unloading), then apply the
  paper's rule to the idle times of one bin or more: pre-warm at their 5th percentile
  less the margin, keep until the tail plus the margin. When those idle times start
  within the margin of bin 0 this is the paper's window exactly. It matters for
  periodic deployments whose calls sometimes spill into the next minute: more than 5%
  of such zero idle times made the head 0 and kept an hourly job resident for most of
  the day.
- Out-of-bounds share 0.5 and MIN_SAMPLES 10 are ours (the paper gives no number); 10
  also keeps the CV test from trusting a histogram of one idle time (its CV is
  sqrt(239)).

A `Decision` holds absolute times. The paper's keep-alive window, counted from the
pre-warm, is keep_until - prewarm_at = tail * (1 + margin) - head * (1 - margin): the
margins apply to the cutoffs. Applying the margin to (tail - head) instead would, for a
periodic pattern (tail one bin above head), unload before the expected call.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Literal, Protocol

Action = Literal["load", "unload", "keep"]
Pattern = Literal["learning", "out_of_bounds", "unrepresentative", "histogram"]

HISTOGRAM_RANGE_MINUTES = 240
BIN_MINUTES = 1
HEAD_PERCENTILE = 5
TAIL_PERCENTILE = 99
MARGIN = 0.10
REPRESENTATIVE_CV = 2.0
MIN_SAMPLES = 10
OUT_OF_BOUNDS_SHARE = 0.5
# The platform's default keepalive_idle_s (600 s), and AWS Lambda's fixed keep-alive.
FALLBACK_MINUTES = 10


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

    def state_dump(self, deployment_id: object) -> dict:
        """The deployment's state as a JSON object ({} for one never invoked)."""
        ...

    def state_load(self, deployment_id: object, data: dict) -> None:
        """Replace the deployment's state with one from `state_dump`."""
        ...


def policy_for(kind: str, idle_minutes: float) -> Policy:
    """The policy a deployment's keepalive setting names; `idle_minutes` is its fixed
    keep-alive, which the adaptive policy uses while it learns."""
    if kind == "fixed":
        return FixedKeepAlive(idle_minutes)
    if kind == "adaptive":
        return HybridHistogram(fallback_minutes=idle_minutes)
    raise ValueError(f"Unknown keep-alive policy {kind!r}: choose adaptive or fixed.")


@dataclass
class _Deployments:
    """The last decision per deployment; what `decide` answers from."""

    decisions: dict[object, Decision] = field(default_factory=dict)

    def decide(self, deployment_id: object, now: float) -> Action:
        decision = self.decisions.get(deployment_id)
        return "unload" if decision is None else decision.action(now)

    def dump(self, deployment_id: object) -> dict:
        decision = self.decisions.get(deployment_id)
        return {} if decision is None else {"decision": asdict(decision)}

    def load(self, deployment_id: object, data: dict) -> None:
        """Any policy's dump carries the decision, so a deployment that changes policy
        keeps its current window."""
        if "decision" in data:
            self.decisions[deployment_id] = Decision(**data["decision"])
        else:
            self.decisions.pop(deployment_id, None)


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

    def state_dump(self, deployment_id: object) -> dict:
        """{"decision": {...}}, or {} before the first invocation."""
        return self._deployments.dump(deployment_id)

    def state_load(self, deployment_id: object, data: dict) -> None:
        self._deployments.load(deployment_id, data)


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

    def percentile_bin(self, percentile: float, *, first_bin: int = 0) -> int:
        """Index of the first bin at which the cumulative in-bound count, from
        `first_bin` on, reaches `percentile` % of the in-bound idle times there."""
        target = percentile / 100 * sum(self.bins[first_bin:])
        cumulative = 0
        for index in range(first_bin, len(self.bins)):
            cumulative += self.bins[index]
            if cumulative > 0 and cumulative >= target - 1e-9:
                return index
        return len(self.bins) - 1

    def head_minutes(self, percentile: float = HEAD_PERCENTILE, *, first_bin: int = 0) -> float:
        """Lower edge of the head percentile's bin: pre-warm no later than this."""
        return self.percentile_bin(percentile, first_bin=first_bin) * self.bin_minutes

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

    def dump(self) -> dict:
        """Sparse: only the bins that hold idle times, as [index, count] pairs."""
        return {
            "range_minutes": self.range_minutes,
            "bin_minutes": self.bin_minutes,
            "bins": [[index, count] for index, count in enumerate(self.bins) if count],
            "out_of_bounds": self.out_of_bounds,
        }


@dataclass
class _HistogramState:
    histogram: IdleHistogram
    last_end: float | None = None


class HybridHistogram:
    """The hybrid histogram policy (Shahrad et al., ATC 2020, section 4), with the
    deviations the module docstring gives.

    Per deployment, a histogram of idle times (1-minute bins over 4 hours). After each
    invocation, by `pattern`:

    - "learning" (fewer than `min_samples` idle times) or "out_of_bounds" (a share of
      at least `out_of_bounds_share` beyond the range): resident for `fallback_minutes`;
    - "unrepresentative" (CV of the bin counts below `representative_cv`): resident for
      `range_minutes`, the paper's standard keep-alive;
    - "histogram", head above 0: unload at once, pre-warm at the head (5th percentile)
      less `margin`, stay until the tail (99th percentile) plus `margin`;
    - "histogram", head 0: resident from the end; when the idle times of one bin or
      more start later than the margin allows (and before the tail), unload after one
      bin and pre-warm at their head; stay until the tail plus `margin`.
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
        fallback_minutes: float = FALLBACK_MINUTES,
    ) -> None:
        self.range_minutes = range_minutes
        self.bin_minutes = bin_minutes
        self.head_percentile = head_percentile
        self.tail_percentile = tail_percentile
        self.margin = margin
        self.representative_cv = representative_cv
        self.min_samples = min_samples
        self.out_of_bounds_share = out_of_bounds_share
        self.fallback_minutes = fallback_minutes
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

    def pattern(self, deployment_id: object) -> Pattern:
        histogram = self.histogram(deployment_id)
        if histogram.samples and histogram.out_of_bounds_share() >= self.out_of_bounds_share:
            return "out_of_bounds"
        if histogram.samples < self.min_samples:
            return "learning"
        if histogram.cv() < self.representative_cv:
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
        pattern = self.pattern(deployment_id)
        if pattern in ("learning", "out_of_bounds"):
            return _resident(end, self.fallback_minutes)
        if pattern == "unrepresentative":
            return _resident(end, self.range_minutes)
        histogram = self.histogram(deployment_id)
        tail = histogram.tail_minutes(self.tail_percentile) * (1 + self.margin)
        head = histogram.head_minutes(self.head_percentile) * (1 - self.margin)
        if head > 0:
            return Decision(unload_after=end, prewarm_at=end + head, keep_until=end + tail)
        if histogram.in_bounds == histogram.bins[0]:
            return _resident(end, tail)
        later_head = histogram.head_minutes(self.head_percentile, first_bin=1) * (1 - self.margin)
        if later_head <= self.bin_minutes or later_head >= tail:
            return _resident(end, tail)
        return Decision(unload_after=end + self.bin_minutes, prewarm_at=end + later_head, keep_until=end + tail)

    def decide(self, deployment_id: object, now: float) -> Action:
        return self._deployments.decide(deployment_id, now)

    def state_dump(self, deployment_id: object) -> dict:
        """{"decision": {...}, "histogram": {...}, "last_end": minutes}, or {} before
        the first invocation."""
        state = self._states.get(deployment_id)
        if state is None:
            return self._deployments.dump(deployment_id)
        return {**self._deployments.dump(deployment_id), "histogram": state.histogram.dump(),
                "last_end": state.last_end}

    def state_load(self, deployment_id: object, data: dict) -> None:
        """A histogram of another layout (range or bin width changed since the dump) is
        dropped, and so is a dump of the fixed policy's: the deployment learns afresh,
        keeping its current window."""
        self._deployments.load(deployment_id, data)
        self._states.pop(deployment_id, None)
        dumped = data.get("histogram")
        if dumped is None or (dumped["range_minutes"], dumped["bin_minutes"]) != (self.range_minutes, self.bin_minutes):
            return
        state = self._state(deployment_id)
        for index, count in dumped["bins"]:
            state.histogram.bins[index] = count
        state.histogram.out_of_bounds = dumped["out_of_bounds"]
        state.last_end = data["last_end"]


def _resident(end: float, minutes: float) -> Decision:
    return Decision(unload_after=end + minutes, prewarm_at=None, keep_until=end + minutes)
