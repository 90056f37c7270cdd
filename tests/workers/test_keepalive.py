"""Keep-alive policies (workers.keepalive) and the trace replay (workers.keepalive_replay).
Pure code: no database, no Redis."""
import json
import math
import random

import pytest

from workers.keepalive import HISTOGRAM_RANGE_MINUTES, MIN_SAMPLES, FixedKeepAlive, HybridHistogram, IdleHistogram
from workers.keepalive_replay import Function, main, replay


@pytest.fixture(autouse=True)
def _clean_redis():
    """Overrides the suite's Redis flush: nothing here touches Redis."""
    yield


def test_histogram_bins_and_out_of_bounds():
    histogram = IdleHistogram()
    for idle in (0, 0.5, 1.0, 239.9, 240, 1000, -3):
        histogram.add(idle)
    assert len(histogram.bins) == 240
    assert histogram.bins[0] == 3  # 0, 0.5 and a negative idle time (overlapping invocations)
    assert histogram.bins[1] == 1
    assert histogram.bins[239] == 1
    assert histogram.out_of_bounds == 2
    assert histogram.samples == 7
    assert histogram.out_of_bounds_share() == pytest.approx(2 / 7)


def test_histogram_percentiles_and_cv():
    histogram = IdleHistogram()
    for idle, times in ((2, 5), (10, 90), (50, 5)):
        for _ in range(times):
            histogram.add(idle)
    assert histogram.percentile_bin(5) == 2
    assert histogram.percentile_bin(6) == 10
    assert histogram.percentile_bin(99) == 50
    assert histogram.head_minutes() == 2  # lower edge of the 5th percentile's bin
    assert histogram.tail_minutes() == 51  # upper edge of the 99th percentile's bin

    peaked = IdleHistogram()
    for _ in range(20):
        peaked.add(7)
    assert peaked.cv() == pytest.approx(math.sqrt(239))
    flat = IdleHistogram()
    for idle in range(240):
        flat.add(idle)
    assert flat.cv() == 0


def test_fixed_keep_alive_window():
    policy = FixedKeepAlive(10)
    assert policy.decide("d", 0) == "unload"
    decision = policy.on_invocation("d", 5, ends_at=6)
    assert (decision.unload_after, decision.prewarm_at, decision.keep_until) == (16, None, 16)
    assert [policy.decide("d", t) for t in (5, 6, 15, 16)] == ["keep", "keep", "keep", "unload"]


def every(period: int, minutes: int = 1440) -> list[int]:
    return [1 if minute % period == 0 else 0 for minute in range(minutes)]


def test_periodic_pattern_prewarms_just_before_the_next_call():
    policy = HybridHistogram()
    for minute in range(0, 30 * (MIN_SAMPLES + 1), 30):
        decision = policy.on_invocation("d", minute, ends_at=minute + 1)
    last = 30 * MIN_SAMPLES
    assert policy.pattern("d") == "histogram"
    # Idle time 29 minutes: pre-warm at 29 - 10%, keep until 30 + 10% after the end.
    assert decision.unload_after == last + 1
    assert decision.prewarm_at == pytest.approx(last + 1 + 29 * 0.9)
    assert decision.keep_until == pytest.approx(last + 1 + 30 * 1.1)
    assert [policy.decide("d", last + k) for k in (1, 27, 28, 29, 30)] == ["unload", "unload", "load", "load", "load"]


def test_periodic_pattern_has_no_cold_starts_after_warm_up_and_few_idle_minutes():
    trace = [Function("every-30", 1024, every(30))]
    adaptive = replay(HybridHistogram(), trace)
    keep_60 = replay(FixedKeepAlive(60), trace)
    keep_10 = replay(FixedKeepAlive(10), trace)
    assert adaptive.invocation_minutes == 48
    assert adaptive.cold_starts == 1  # only the very first call
    assert keep_10.cold_starts == 48
    # Warm-up: the first MIN_SAMPLES calls (minutes 0-270) are followed by the fallback
    # keep-alive, 29 idle minutes each; every later call (38) is followed by an unload
    # and a pre-warm for minutes 28 and 29 of its period: 2 idle minutes each.
    assert MIN_SAMPLES == 10
    assert adaptive.idle_warm_minutes == 10 * 29 + 38 * 2
    assert adaptive.prewarms == 38
    assert keep_60.idle_warm_minutes == 47 * 29 + 29
    assert adaptive.idle_warm_minutes < keep_60.idle_warm_minutes / 3


def test_flat_pattern_falls_back_to_the_generous_keep_alive():
    policy = HybridHistogram()
    rng = random.Random(7)
    start = 0.0
    for _ in range(400):
        end = start + 1
        decision = policy.on_invocation("d", start, ends_at=end)
        start = end + rng.uniform(0, 239)
    assert policy.histogram("d").cv() < 2
    assert policy.pattern("d") == "unrepresentative"
    # No pre-warm: resident from the end of the call for the histogram's range.
    assert decision.prewarm_at is None
    assert decision.unload_after == decision.keep_until == end + HISTOGRAM_RANGE_MINUTES
    assert policy.decide("d", end + HISTOGRAM_RANGE_MINUTES - 0.5) == "keep"
    assert policy.decide("d", end + HISTOGRAM_RANGE_MINUTES) == "unload"


@pytest.mark.parametrize("out_of_bounds_idle", [241, 600, 5000])
def test_out_of_bound_idle_times_fall_back(out_of_bounds_idle):
    policy = HybridHistogram()
    now = 0
    for index in range(2 * MIN_SAMPLES):
        decision = policy.on_invocation("d", now, ends_at=now + 1)
        # Alternating 30 and out-of-bound idle times: half out of bounds.
        now += 1 + (30 if index % 2 else out_of_bounds_idle)
    assert policy.histogram("d").out_of_bounds_share() >= 0.5
    assert policy.pattern("d") == "out_of_bounds"
    assert decision.prewarm_at is None
    assert decision.keep_until == decision.unload_after
    assert policy.decide("d", decision.keep_until - 1) == "keep"


def test_too_few_samples_fall_back_even_when_peaked():
    policy = HybridHistogram()
    for minute in range(0, 30 * MIN_SAMPLES, 30):  # MIN_SAMPLES - 1 idle times
        decision = policy.on_invocation("d", minute, ends_at=minute + 1)
    assert policy.pattern("d") == "unrepresentative"
    assert decision.prewarm_at is None
    assert decision.keep_until == 30 * (MIN_SAMPLES - 1) + 1 + HISTOGRAM_RANGE_MINUTES


def write_trace(directory, functions):
    """functions: (function, app, MB, {minute: count}) over 30 minutes."""
    minutes = 30
    with open(directory / "invocations.csv", "w") as f:
        f.write(",".join(["HashFunction", "HashApp", "HashOwner"] + [f"minute_{m + 1}" for m in range(minutes)]) + "\n")
        for name, app, _, counts in functions:
            f.write(",".join([name, app, "owner"] + [str(counts.get(m, 0)) for m in range(minutes)]) + "\n")
    with open(directory / "memory.csv", "w") as f:
        f.write("HashApp,HashOwner,SampleCount,AverageAllocatedMb\n")
        for _, app, mb, _ in functions:
            f.write(f"{app},owner,1,{mb}\n")


def test_replay_counts_cold_starts_and_idle_minutes_by_hand(tmp_path, capsys):
    write_trace(
        tmp_path,
        [
            ("f1", "a1", 512, {0: 3, 5: 1, 20: 2}),
            ("f2", "a2", 1024, {12: 4}),
        ],
    )
    assert main(["--trace", str(tmp_path)]) == 0
    results = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    # f1 under 10 minutes: 0 cold, 1-4 idle (4), 5 warm, 6-15 idle (10), 16-19 unloaded,
    # 20 cold, 21-29 idle (9): 2 cold, 23 idle minutes, 11.5 GB-min.
    # f2: 12 cold, 13-22 idle (10 minutes, 10 GB-min).
    assert results["fixed_10min"] == {
        "invocations": 10,
        "invocation_minutes": 4,
        "cold_starts": 3,
        "cold_start_share": 0.75,
        "idle_warm_minutes": 33,
        "idle_gb_minutes": 21.5,
        "prewarms": 0,
    }
    # Under 60 minutes f1 stays warm from 0 on: 1 cold, 4 + 14 + 9 idle = 27 (13.5 GB-min);
    # f2: 1 cold, 13-29 idle = 17 (17 GB-min). The adaptive policy has no histogram yet
    # (2 idle times < MIN_SAMPLES) and keeps 240 minutes: the same here.
    expected_60 = {
        "invocations": 10,
        "invocation_minutes": 4,
        "cold_starts": 2,
        "cold_start_share": 0.5,
        "idle_warm_minutes": 44,
        "idle_gb_minutes": 30.5,
        "prewarms": 0,
    }
    assert results["fixed_60min"] == expected_60
    assert results["adaptive"] == expected_60


def test_replay_options_cut_functions_and_minutes(tmp_path, capsys):
    write_trace(tmp_path, [("f1", "a1", 512, {0: 3, 5: 1, 20: 2}), ("f2", "a2", 1024, {12: 4})])
    main(["--trace", str(tmp_path), "--functions", "1", "--minutes", "10"])
    results = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    # f1, minutes 0-9: 0 cold, 1-4 idle, 5 warm, 6-9 idle.
    assert results["fixed_10min"]["invocations"] == 4
    assert results["fixed_10min"]["cold_starts"] == 1
    assert results["fixed_10min"]["idle_warm_minutes"] == 8
