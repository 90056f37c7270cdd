"""The replay's run: the options, the slice, the stack with the policy minute and pass
interval it is given, and the report."""
import argparse
from pathlib import Path

import bench.replay
from bench.keepalive import trace_read
from bench.replay.live import calls_meter, calls_send, deployments_prepare, worker_events
from bench.replay.report import report
from bench.replay.simulated import simulate, slice_pick
from bench.stack import scratch_stack, scratch_stop

MINUTE_S = 1.0
AUTOSCALE_INTERVAL_S = 0.2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.replay", description=bench.replay.__doc__.splitlines()[0])
    parser.add_argument("--trace", type=Path, required=True, help="directory with invocations.csv and memory.csv")
    parser.add_argument("--functions", type=int, default=20, help="functions (deployments) to replay (default 20)")
    parser.add_argument("--minutes", type=int, default=120, help="trace minutes to replay (default 120)")
    parser.add_argument("--start", type=int, default=0, help="first trace minute of the slice (default 0)")
    parser.add_argument("--policy", choices=["adaptive", "fixed"], default="adaptive",
                        help="keep-alive of every deployment (default adaptive; both fall back to 10 minutes)")
    parser.add_argument("--minute-s", type=float, default=MINUTE_S,
                        help=f"seconds a trace minute lasts (default {MINUTE_S:g})")
    parser.add_argument("--interval", type=float, default=AUTOSCALE_INTERVAL_S,
                        help=f"autoscaler pass interval in seconds (default {AUTOSCALE_INTERVAL_S:g})")
    parser.add_argument("--explain", action="store_true", help="print each disagreeing minute with its live events")
    args = parser.parse_args(argv)

    functions = slice_pick(trace_read(args.trace), count=args.functions, start=args.start, minutes=args.minutes)
    if not functions:
        raise SystemExit("no function of the trace fits the slice")
    print(f"{len(functions)} functions, minutes {args.start}-{args.start + args.minutes - 1} of {args.trace}, "
          f"policy {args.policy}, 1 trace minute = {args.minute_s:g} s, autoscaler every {args.interval:g} s")
    for i, function in enumerate(functions):
        pattern = "".join("x" if c else "." for c in function.counts)
        print(f"  {i:>3} {function.name[:10]} {sum(1 for c in function.counts if c):>4} {pattern}")
    simulated = [simulate(args.policy, f) for f in functions]

    # The stack's processes inherit the policy minute and the pass interval.
    stack = scratch_stack("replay", redis_db=6, env={"KEEPALIVE_MINUTE_S": f"{args.minute_s:g}",
                                                      "AUTOSCALE_INTERVAL_S": f"{args.interval:g}"})
    workdir = stack.workdir
    print(f"stack logs in {workdir}")
    stack.start()
    try:
        tenant, deployments, key = deployments_prepare(stack, functions, args.policy)
        calls, base_s = calls_send(stack, functions, deployments, key, args)
        stack.kill("beat")
        calls_meter(stack, tenant, calls)
        exited = sorted(name for name, proc in stack.procs.items() if name != "beat" and proc.poll() is not None)
        live_events = worker_events(stack.log("worker"), {d.pk: d.triton_name for d in deployments}, base_s,
                                    args.minute_s)
    finally:
        scratch_stop(stack)

    if exited:
        print(f"stack processes that exited during the replay: {', '.join(exited)} (logs in {workdir})")
    return report(args, functions, simulated, calls, [live_events[d.pk] for d in deployments], exited)
