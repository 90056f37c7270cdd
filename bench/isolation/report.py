"""The noisy-neighbour benchmark's report: B's phases, A's outcomes, Triton's health and the
CPU per phase, as tables and, last, one JSON line."""
import json
import os
from collections import Counter

from bench.isolation.kinds import BUCKETS, bucket


def report(args, phases: dict, flood: dict, triton: dict, cpu: dict) -> dict:
    def number(value, spec=".2f") -> str:
        return "-" if value is None else format(value, spec)

    print(f"\nB: {args.clients} closed-loop clients, digits, JSON tensors (p50/p99 of successful calls)")
    print(f"{'phase':10} {'seconds':>7} {'requests':>9} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} "
          f"{'error rate':>10}  outcomes")
    for phase, row in phases.items():
        seconds = args.after_seconds if phase == "after" else args.seconds
        print(f"{phase:10} {seconds:>7g} {row['requests']:>9} {row['rps']:>8.1f} {number(row['p50_ms']):>8} "
              f"{number(row['p99_ms']):>8} {row['errors']:>7} {row['error_rate'] * 100:>9.2f}%  {row['outcomes']}")
    base, noise = phases["baseline"], phases["noise"]

    def ratio(field: str) -> float | None:
        if base[field] and noise[field] is not None:
            return round(noise[field] / base[field], 2)
        return None

    ratios = {"p50": ratio("p50_ms"), "p99": ratio("p99_ms"), "rps": ratio("rps")}
    print(f"{'noise/base':10} {'':>7} {'':>9} {number(ratios['rps']):>8} {number(ratios['p50']):>8} "
          f"{number(ratios['p99']):>8}")

    totals = Counter()
    print(f"\nA: {args.flooders} flooders, mix {args.mix}" + (f", excluding {args.exclude}" if args.exclude else "")
          + f"; {args.hog_flooders} hog senders, n = {args.hog_n:g}; outcomes per request kind over the noise phase")
    print(f"{'kind':20} {'sent':>7} {'p50 ms':>8} " + " ".join(f"{b:>10}" for b in BUCKETS) + "  raw")
    for kind, outcomes in flood["outcomes"].items():
        buckets = Counter()
        for outcome, count in outcomes.items():
            buckets[bucket(outcome)] += count
        totals.update(buckets)
        print(f"{kind:20} {sum(outcomes.values()):>7} {number(flood['p50_ms'].get(kind), '.1f'):>8} "
              + " ".join(f"{buckets[b]:>10}" for b in BUCKETS)
              + f"  {dict(sorted(outcomes.items()))}")
    print(f"{'total':20} {sum(totals.values()):>7} {'':>8} " + " ".join(f"{totals[b]:>10}" for b in BUCKETS))
    unanswered = [kind for kind, outcomes in flood["outcomes"].items()
                  if sum(n for o, n in outcomes.items() if bucket(o) != "429")
                  and not sum(n for o, n in outcomes.items() if bucket(o) in ("2xx", "400", "4xx other"))]
    if unanswered:
        print(f"admitted but never answered 2xx/4xx: {', '.join(unanswered)} (if Triton died: the suspects, "
              "with whatever was in flight; --exclude one to confirm)")
    flood_seconds = flood["seconds"] or float("nan")
    print(f"A flooded for {flood_seconds:.1f} s and sent {sum(totals.values()) / flood_seconds:.0f} req/s; "
          f"{totals['2xx'] / flood_seconds:.0f} req/s "
          f"answered 2xx")

    down = triton["failures"] > args.max_triton_failures or triton["restarts"] > 0 or triton["exit"] is not None
    print(f"\nTriton: {triton['polls']} health polls, {triton['failures']} failed {triton['failures_by_phase']}"
          + (f", first at {triton['first_failure']}" if triton["first_failure"] else "")
          + f"; tritonserver pid(s) {triton['server_pids']}, restarts {triton['restarts']}, "
          f"{'still running' if triton['exit'] is None else 'ended: ' + triton['exit']}; "
          f"model processes seen {triton['stubs_seen']}, gone {triton['stubs_gone']}")
    for line in triton["log"]:
        print(f"  triton.log: {line}")

    print(f"\nCPU seconds per phase ({os.cpu_count()} cores; triton includes its model processes; rest = the "
          "machine's busy time minus the columns before it: Redis, PostgreSQL, the portal, other work on the machine)")
    names = [name for name in cpu["noise"] if name not in ("machine", "wall")]
    print(f"{'phase':10} {'wall s':>7} " + " ".join(f"{name:>10}" for name in names) + f" {'rest':>10}")
    busy_elsewhere = []
    for phase, row in cpu.items():
        rest = row["machine"] - sum(row.get(name) or 0 for name in names)
        if rest / row["wall"] > 0.5:
            busy_elsewhere.append(f"{phase} {rest / row['wall']:.1f}")
        print(f"{phase:10} {row['wall']:>7.1f} " + " ".join(f"{number(row.get(name)):>10}" for name in names)
              + f" {rest:>10.2f}")
    if busy_elsewhere:
        print(f"note: the rest of the machine kept {', '.join(busy_elsewhere)} cores busy on average (Redis and "
              "PostgreSQL need far less): other work shared the cores, and B's figures are pessimistic")

    failures = []
    if noise["error_rate"] > args.max_error_rate:
        failures.append(f"B's error rate under noise {noise['error_rate'] * 100:.2f}% > "
                        f"{args.max_error_rate * 100:g}%")
    if down:
        failures.append("Triton went down")
    result = {
        "b_baseline": {k: round(v, 4) if isinstance(v, float) else v for k, v in base.items() if k != "outcomes"},
        "b_noise": {k: round(v, 4) if isinstance(v, float) else v for k, v in noise.items() if k != "outcomes"},
        "b_after": {k: round(v, 4) if isinstance(v, float) else v for k, v in phases["after"].items()
                    if k != "outcomes"},
        "noise_over_baseline": ratios, "a_outcomes": {b: totals[b] for b in BUCKETS},
        "a_flood_seconds": round(flood_seconds, 1),
        "triton": {k: v for k, v in triton.items() if k != "log"}, "cpu_s": cpu, "passed": not failures,
        "failures": failures,
    }
    print("\n" + ("PASS" if not failures else "FAIL: " + "; ".join(failures)))
    print(json.dumps(result))
    return result
