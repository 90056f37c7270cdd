"""Keep-alive policies (workers.keepalive) and the trace replay (bench.keepalive).
Pure code: no database, no Redis."""
import json
import math
import random
from pathlib import Path

import pytest

from bench.keepalive import Function, main, replay
from workers.keepalive import (
    BIN_MINUTES,
    FALLBACK_MINUTES,
    HISTOGRAM_RANGE_MINUTES,
    MIN_SAMPLES,
    Decision,
    FixedKeepAlive,
    HybridHistogram,
    IdleHistogram,
    policy_for,
)

AZURE_DAY = Path(__file__).resolve().parents[2] / ".." / "shared" / "traces" / "azure-functions-2019"


@pytest.fixture(autouse=True)
def _clean_redis():
    """Overrides the suite's Redis flush: nothing here touches Redis."""
    yield


def drive(policy, idle_times, *, deployment="d", duration=1):
    """Invocations `duration` long separated by `idle_times`, from minute 0; returns the
    last decision and the end of the last invocation."""
    start = 0.0
    decision = policy.on_invocation(deployment, start, ends_at=start + duration)
    for idle in idle_times:
        start += duration + idle
        decision = policy.on_invocation(deployment, start, ends_at=start + duration)
    return decision, start + duration


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
    for idle, times in ((0, 4), (2, 5), (10, 90), (50, 5)):
        for _ in range(times):
            histogram.add(idle)
    assert histogram.percentile_bin(3) == 0
    assert histogram.percentile_bin(5) == 2
    assert histogram.percentile_bin(99) == 50
    assert histogram.head_minutes() == 2  # lower edge of the 5th percentile's bin
    assert histogram.tail_minutes() == 51  # upper edge of the 99th percentile's bin
    # From bin 1 on: 100 idle times, the 5th the last of the five in bin 2, the 6th in bin 10.
    assert histogram.percentile_bin(5, first_bin=1) == 2
    assert histogram.head_minutes(6, first_bin=1) == 10

    peaked = IdleHistogram()
    for _ in range(20):
        peaked.add(7)
    assert peaked.cv() == pytest.approx(math.sqrt(239))
    flat = IdleHistogram()
    for idle in range(240):
        flat.add(idle)
    assert flat.cv() == 0


def test_empty_histogram():
    histogram = IdleHistogram()
    assert histogram.samples == 0
    assert histogram.cv() == 0
    assert histogram.out_of_bounds_share() == 0
    assert histogram.percentile_bin(50) == 239


@pytest.mark.parametrize(
    "decision, expected",
    [
        # No pre-warm: resident until keep_until.
        (Decision(unload_after=10, prewarm_at=None, keep_until=10), ["keep", "keep", "keep", "unload"]),
        # Unload at 2, load again at 6, until 8.
        (Decision(unload_after=2, prewarm_at=6, keep_until=8), ["keep", "unload", "load", "unload"]),
    ],
)
def test_decision_actions(decision, expected):
    assert [decision.action(t) for t in (1, 4, 7, 10)] == expected


def test_fixed_keep_alive_window():
    policy = FixedKeepAlive(10)
    assert policy.decide("d", 0) == "unload"
    decision = policy.on_invocation("d", 5, ends_at=6)
    assert (decision.unload_after, decision.prewarm_at, decision.keep_until) == (16, None, 16)
    assert [policy.decide("d", t) for t in (5, 6, 15, 16)] == ["keep", "keep", "keep", "unload"]
    # Without ends_at the invocation ends when it starts.
    assert policy.on_invocation("d", 20).keep_until == 30


@pytest.mark.parametrize(
    "kind, policy_type, name",
    [("fixed", FixedKeepAlive, "fixed_15min"), ("adaptive", HybridHistogram, "adaptive")],
)
def test_policy_for_builds_the_deployments_policy(kind, policy_type, name):
    policy = policy_for(kind, 15)
    assert isinstance(policy, policy_type)
    assert policy.name == name
    # Both keep a first invocation resident for the deployment's idle minutes.
    assert policy.on_invocation("d", 0, ends_at=1).keep_until == 16


def test_policy_for_rejects_an_unknown_kind():
    with pytest.raises(ValueError, match="Unknown keep-alive policy 'sometimes'"):
        policy_for("sometimes", 10)


def every(period: int, minutes: int = 1440) -> list[int]:
    return [1 if minute % period == 0 else 0 for minute in range(minutes)]


def test_learning_keeps_the_fixed_keep_alive_even_when_peaked():
    policy = HybridHistogram(fallback_minutes=7)
    decision, end = drive(policy, [29] * (MIN_SAMPLES - 1))
    assert policy.pattern("d") == "learning"
    assert decision == Decision(unload_after=end + 7, prewarm_at=None, keep_until=end + 7)
    assert HybridHistogram().on_invocation("e", 0, ends_at=1).keep_until == 1 + FALLBACK_MINUTES


def test_periodic_pattern_prewarms_just_before_the_next_call():
    policy = HybridHistogram()
    decision, end = drive(policy, [29] * MIN_SAMPLES)
    assert policy.pattern("d") == "histogram"
    # Idle time 29 minutes: pre-warm at 29 - 10%, keep until 30 + 10% after the end.
    assert decision.unload_after == end
    assert decision.prewarm_at == pytest.approx(end + 29 * 0.9)
    assert decision.keep_until == pytest.approx(end + 30 * 1.1)
    assert [policy.decide("d", end + k) for k in (0, 26, 27, 28, 29)] == ["unload", "unload", "load", "load", "load"]


def test_periodic_pattern_is_warm_after_learning_for_few_idle_minutes():
    trace = [Function("every-30", 1024, every(30))]
    adaptive = replay(HybridHistogram(), trace)
    keep_60 = replay(FixedKeepAlive(60), trace)
    keep_10 = replay(FixedKeepAlive(10), trace)
    assert adaptive.invocation_minutes == 48
    assert keep_10.cold_starts == 48
    # Learning: the calls at minutes 0-270 are followed by the fixed 10 minutes, so the
    # first 11 calls are cold; every later one (37) finds the model pre-warmed for
    # minutes 28 and 29 of its period.
    assert MIN_SAMPLES == 10
    assert adaptive.cold_starts == 11
    assert adaptive.idle_warm_minutes == 10 * 10 + 38 * 2
    assert adaptive.prewarms == 38
    assert keep_60.cold_starts == 1
    assert keep_60.idle_warm_minutes == 47 * 29 + 29
    assert adaptive.idle_warm_minutes < keep_60.idle_warm_minutes / 7


def test_flat_pattern_falls_back_to_the_range_keep_alive():
    policy = HybridHistogram()
    rng = random.Random(7)
    decision, end = drive(policy, [rng.uniform(0, 239) for _ in range(400)])
    assert policy.histogram("d").cv() < 2
    assert policy.pattern("d") == "unrepresentative"
    # No pre-warm: resident from the end of the call for the histogram's range.
    assert decision == Decision(unload_after=end + HISTOGRAM_RANGE_MINUTES, prewarm_at=None,
                                keep_until=end + HISTOGRAM_RANGE_MINUTES)
    assert policy.decide("d", end + HISTOGRAM_RANGE_MINUTES - 0.5) == "keep"
    assert policy.decide("d", end + HISTOGRAM_RANGE_MINUTES) == "unload"


@pytest.mark.parametrize("out_of_bounds_idle", [240, 600, 5000])
def test_out_of_bound_idle_times_fall_back_to_the_fixed_keep_alive(out_of_bounds_idle):
    policy = HybridHistogram(fallback_minutes=12)
    # Alternating out-of-bound and 30-minute idle times: half out of bounds.
    decision, end = drive(policy, [out_of_bounds_idle, 30] * MIN_SAMPLES)
    assert policy.histogram("d").out_of_bounds_share() == 0.5
    assert policy.pattern("d") == "out_of_bounds"
    assert decision == Decision(unload_after=end + 12, prewarm_at=None, keep_until=end + 12)


@pytest.mark.parametrize(
    "idle_times, tail",
    [
        # Bursty: idle times from bin 0 on, the later ones starting in bin 1.
        ([0, 1, 2, 3, 30] * 4, 31),
        # Only zero idle times: keep one bin plus the margin.
        ([0] * 20, 1),
        # Zero idle times but for rare ones beyond the 99th percentile.
        ([0] * 199 + [90], 1),
    ],
)
def test_head_zero_without_a_gap_stays_resident_until_the_tail(idle_times, tail):
    policy = HybridHistogram()
    decision, end = drive(policy, idle_times)
    assert policy.pattern("d") == "histogram"
    assert policy.histogram("d").head_minutes() == 0
    assert decision.prewarm_at is None
    assert decision.unload_after == decision.keep_until == pytest.approx(end + tail * 1.1)


def hourly_with_spills(hours: int) -> list[int]:
    """Hourly calls; every third one spills into the next minute."""
    minutes = []
    for hour in range(hours):
        minutes += [60 * hour, 60 * hour + 1] if hour % 3 == 0 else [60 * hour]
    return [1 if minute in minutes else 0 for minute in range(60 * hours)]


def test_head_zero_with_a_gap_unloads_after_one_bin_and_prewarms():
    policy = HybridHistogram()
    counts = hourly_with_spills(24)
    calls = [minute for minute, count in enumerate(counts) if count]
    for minute in calls:
        decision = policy.on_invocation("d", minute, ends_at=minute + 1)
    end = calls[-1] + 1
    histogram = policy.histogram("d")
    assert histogram.bins[0] / histogram.in_bounds > 0.05  # so the paper's head is 0
    assert histogram.head_minutes() == 0
    # Resident through bin 0, then pre-warmed from 58 - 10% (the 5th percentile of the
    # idle times from bin 1 on) until 60 + 10%, the paper's tail.
    assert decision == Decision(unload_after=end + BIN_MINUTES, prewarm_at=pytest.approx(end + 58 * 0.9),
                                keep_until=pytest.approx(end + 60 * 1.1))
    assert [policy.decide("d", end + k) for k in (0, 1, 52, 53, 65, 66)] == [
        "keep", "unload", "unload", "load", "load", "unload"]


def test_head_zero_with_a_gap_keeps_hourly_calls_warm_for_little():
    trace = [Function("hourly", 512, hourly_with_spills(24))]
    adaptive = replay(HybridHistogram(), trace)
    keep_60 = replay(FixedKeepAlive(60), trace)
    keep_10 = replay(FixedKeepAlive(10), trace)
    assert adaptive.invocation_minutes == keep_10.invocation_minutes == 32
    # Learning covers the first 11 calls (hours 0-7), all cold but the spills; after it
    # every hourly call is pre-warmed, and so is every spill.
    assert adaptive.cold_starts == 8
    assert keep_10.cold_starts == 24
    assert keep_60.cold_starts == 1
    assert adaptive.idle_warm_minutes < keep_10.idle_warm_minutes < keep_60.idle_warm_minutes / 5


def test_overlapping_invocations_measure_idle_time_from_the_latest_end():
    policy = HybridHistogram()
    policy.on_invocation("d", 0, ends_at=10)
    policy.on_invocation("d", 2, ends_at=4)  # starts before the first ends: idle time 0
    policy.on_invocation("d", 15, ends_at=16)  # 5 minutes after the first call's end
    histogram = policy.histogram("d")
    assert histogram.bins[0] == 1
    assert histogram.bins[5] == 1


def test_deployments_are_independent():
    policy = HybridHistogram()
    drive(policy, [29] * MIN_SAMPLES, deployment="a")
    drive(policy, [29] * 2, deployment="b")
    assert policy.pattern("a") == "histogram"
    assert policy.pattern("b") == "learning"
    assert policy.decide("c", 0) == "unload"


def random_calls(rng: random.Random, count: int) -> list[tuple[float, float]]:
    """(start, end) pairs: runs of calls close together, hourly-ish gaps, some overlap,
    some beyond the histogram's range."""
    calls, start = [], 0.0
    for _ in range(count):
        start += rng.choice([0.0, rng.uniform(0, 2), rng.uniform(25, 35), rng.uniform(55, 65), rng.uniform(200, 400)])
        calls.append((start, start + rng.uniform(0, 3)))
    return calls


@pytest.mark.parametrize("make_policy", [lambda: FixedKeepAlive(10), lambda: policy_for("adaptive", 10)])
@pytest.mark.parametrize("seed", range(5))
def test_state_round_trip_decides_identically(make_policy, seed):
    """The autoscaler's cycle: a fresh policy per pass, loaded from the JSON field."""
    rng = random.Random(seed)
    original = make_policy()
    field = {}
    for start, end in random_calls(rng, 300):
        restored = make_policy()
        restored.state_load("d", json.loads(json.dumps(field)))
        assert restored.on_invocation("d", start, ends_at=end) == original.on_invocation("d", start, ends_at=end)
        for now in [end + rng.uniform(-1, 300) for _ in range(5)]:
            assert restored.decide("d", now) == original.decide("d", now)
        field = restored.state_dump("d")
        assert field == original.state_dump("d")


def test_state_dump_is_sparse_json():
    policy = HybridHistogram()
    drive(policy, [0, 29, 29, 500])
    data = policy.state_dump("d")
    assert data["histogram"] == {"range_minutes": 240, "bin_minutes": 1, "bins": [[0, 1], [29, 2]],
                                 "out_of_bounds": 1}
    assert data["last_end"] == 563
    assert data["decision"] == {"unload_after": 573, "prewarm_at": None, "keep_until": 573}
    assert json.loads(json.dumps(data)) == data


@pytest.mark.parametrize("make_policy", [lambda: FixedKeepAlive(10), HybridHistogram])
def test_an_empty_state_is_a_deployment_never_invoked(make_policy):
    policy = make_policy()
    assert policy.state_dump("d") == {}
    policy.on_invocation("d", 0, ends_at=1)
    policy.state_load("d", {})  # the JSON field's default
    assert policy.decide("d", 2) == "unload"
    assert policy.state_dump("d") == {}


def test_changing_policy_keeps_the_current_window_and_learns_afresh():
    adaptive = HybridHistogram()
    decision, end = drive(adaptive, [29] * MIN_SAMPLES)
    fixed = FixedKeepAlive(10)
    fixed.state_load("d", adaptive.state_dump("d"))
    assert fixed.decide("d", end + 28) == adaptive.decide("d", end + 28) == "load"

    back = HybridHistogram()
    back.state_load("d", fixed.state_dump("d"))
    assert back.decide("d", end + 28) == "load"
    assert back.histogram("d").samples == 0


def test_a_histogram_of_another_layout_is_dropped():
    policy = HybridHistogram()
    drive(policy, [29] * MIN_SAMPLES)
    wider = HybridHistogram(bin_minutes=2)
    wider.state_load("d", policy.state_dump("d"))
    assert wider.histogram("d").samples == 0
    assert wider.pattern("d") == "learning"
    assert wider.state_dump("d")["decision"] == policy.state_dump("d")["decision"]


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
    expected_10 = {
        "invocations": 10,
        "invocation_minutes": 4,
        "cold_starts": 3,
        "cold_start_share": 0.75,
        "idle_warm_minutes": 33,
        "idle_gb_minutes": 21.5,
        "prewarms": 0,
    }
    assert results["fixed_10min"] == expected_10
    # Under 60 minutes f1 stays warm from 0 on: 1 cold, 4 + 14 + 9 idle = 27 (13.5 GB-min);
    # f2: 1 cold, 13-29 idle = 17 (17 GB-min).
    assert results["fixed_60min"] == {
        "invocations": 10,
        "invocation_minutes": 4,
        "cold_starts": 2,
        "cold_start_share": 0.5,
        "idle_warm_minutes": 44,
        "idle_gb_minutes": 30.5,
        "prewarms": 0,
    }
    # The adaptive policy is still learning (2 idle times < MIN_SAMPLES) with the fixed
    # 10 minutes: the same as fixed 10.
    assert results["adaptive"] == expected_10


def test_replay_options_cut_functions_and_minutes(tmp_path, capsys):
    write_trace(tmp_path, [("f1", "a1", 512, {0: 3, 5: 1, 20: 2}), ("f2", "a2", 1024, {12: 4})])
    main(["--trace", str(tmp_path), "--functions", "1", "--minutes", "10"])
    results = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    # f1, minutes 0-9: 0 cold, 1-4 idle, 5 warm, 6-9 idle.
    assert results["fixed_10min"]["invocations"] == 4
    assert results["fixed_10min"]["cold_starts"] == 1
    assert results["fixed_10min"]["idle_warm_minutes"] == 8


@pytest.mark.skipif(not AZURE_DAY.is_dir(), reason="the shared Azure Functions 2019 day is not here")
def test_adaptive_halves_cold_starts_of_fixed_10_without_more_idle_minutes(capsys):
    """The goal on the shared trace (make bench-keepalive)."""
    main(["--trace", str(AZURE_DAY)])
    results = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    fixed, adaptive = results["fixed_10min"], results["adaptive"]
    assert adaptive["cold_starts"] <= fixed["cold_starts"] / 2
    assert adaptive["idle_warm_minutes"] <= fixed["idle_warm_minutes"]
