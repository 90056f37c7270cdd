"""The replay's report: per function and in total, live against simulated, the minutes
that disagree, and, last, one JSON line."""
import json
import math
import statistics

from bench.keepalive import Function
from bench.replay.live import Call, prewarms_count
from bench.replay.simulated import Simulated


def report(args, functions: list[Function], simulated: list[Simulated], calls: list[Call],
           live_events: list[list[tuple[float, str]]], exited: list[str]) -> int:
    rows, mismatches = [], []
    print(f"\n{'#':>3} {'function':<11}{'inv-min':>8}{'cold live':>10}{'cold sim':>9}"
          f"{'prewarm live':>13}{'prewarm sim':>12}")
    for i, (function, sim) in enumerate(zip(functions, simulated, strict=True)):
        mine = [c for c in calls if c.function == i]
        prewarms = prewarms_count(live_events[i], args.minutes)
        row = {"function": function.name[:10], "invocation_minutes": len(mine),
               "cold_live": sum(1 for c in mine if c.cold), "cold_simulated": len(sim.cold_minutes),
               "prewarms_live": prewarms, "prewarms_simulated": sim.prewarms}
        rows.append(row)
        print(f"{i:>3} {row['function']:<11}{row['invocation_minutes']:>8}{row['cold_live']:>10}"
              f"{row['cold_simulated']:>9}{prewarms:>13}{sim.prewarms:>12}")
        for call in mine:
            simulated_cold = call.minute in sim.cold_minutes
            if bool(call.cold) != simulated_cold:
                mismatches.append((i, call, simulated_cold, sim.actions[call.minute]))

    total = {k: sum(row[k] for row in rows) for k in ("invocation_minutes", "cold_live", "cold_simulated",
                                                     "prewarms_live", "prewarms_simulated")}
    print(f"{'':>3} {'total':<11}{total['invocation_minutes']:>8}{total['cold_live']:>10}"
          f"{total['cold_simulated']:>9}{total['prewarms_live']:>13}{total['prewarms_simulated']:>12}")
    matching = sum(1 for row in rows if row["cold_live"] == row["cold_simulated"])
    agreement = round(matching / len(rows), 4)
    failed = [c for c in calls if c.status != 200]
    unmetered = [c for c in calls if c.cold is None]
    misaligned = [c for c in calls if math.floor(c.sent) != c.minute]
    evictions = sum(1 for events in live_events for _, what in events if what == "evicted")
    lost = sum(1 for events in live_events for _, what in events if what == "server_down")
    print(f"functions whose cold starts match exactly: {matching}/{len(rows)} ({agreement:.0%}); "
          f"cold starts live {total['cold_live']}, simulated {total['cold_simulated']} "
          f"(difference {total['cold_live'] - total['cold_simulated']:+d}); minutes that disagree: {len(mismatches)}")
    latencies = sorted(c.latency_s * 1000 for c in calls if c.status == 200)
    if latencies:
        print(f"calls {len(calls)}: p50 {statistics.median(latencies):.1f} ms, max {latencies[-1]:.1f} ms; "
              f"non-200 {len(failed)}; sent outside their minute {len(misaligned)}; without a usage event "
              f"{len(unmetered)}; evictions {evictions}")
    by_action = {action: sum(1 for *_, a in mismatches if a == action) for action in ("load", "keep", "unload")}
    print(f"disagreeing minutes by the simulator's decision: load {by_action['load']} (pre-warmed, live not "
          f"loaded in time), keep {by_action['keep']} (kept warm, live cold), unload {by_action['unload']} "
          f"(cold, live warm)")
    if lost:
        print(f"the health check dropped replicas {lost} times (server declared down): each is a cold start "
              "no policy decided")
    for call in failed:
        print(f"  non-200: {functions[call.function].name[:10]} minute {call.minute} status {call.status} "
              f"{call.code} after {call.latency_s * 1000:.0f} ms")
    if args.explain:
        for i, call, simulated_cold, action in mismatches:
            nearby = ", ".join(f"{at:.2f} {what}" for at, what in live_events[i]
                               if call.minute - 2 <= at < call.minute + 1)
            held = f", held {call.held_ms:.0f} ms" if call.cold and call.held_ms is not None else ""
            held += f", answered {call.status} after {call.latency_s * 1000:.0f} ms"
            print(f"  {functions[i].name[:10]} minute {call.minute}: live {'cold' if call.cold else 'warm'} "
                  f"(sent at {call.sent:.2f}{held}), simulated {'cold' if simulated_cold else 'warm'} "
                  f"({action}); live: {nearby or 'nothing'}")

    result = {
        "policy": args.policy, "functions": len(rows), "minutes": args.minutes, "start": args.start,
        "minute_s": args.minute_s, "interval_s": args.interval, "calls": len(calls), "non_200": len(failed),
        "misaligned_calls": len(misaligned), "unmetered_calls": len(unmetered), "evictions": evictions,
        "replicas_lost_to_health_check": lost, "exited_processes": exited, **total,
        "cold_difference": total["cold_live"] - total["cold_simulated"],
        "cold_abs_difference": sum(abs(row["cold_live"] - row["cold_simulated"]) for row in rows),
        "disagreeing_minutes": len(mismatches), "disagreeing_by_simulated_action": by_action, "agreement": agreement,
        "per_function": rows,
    }
    print(json.dumps(result))
    return 0 if not failed and not exited else 1
