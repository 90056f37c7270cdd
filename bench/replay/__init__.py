"""Live trace replay: `python -m bench.replay --trace <dir>` (`make bench-replay`).

Replays a slice of an Azure Functions 2019 trace against the real stack (bench/stack.py:
Triton, a Celery worker, Celery beat running the autoscaler, the gateway, the metering
consumer) on a scratch database and Redis database of its own, one trace minute per
second, and compares every function's cold starts with the simulator's
(bench/keepalive.py) on the same slice and policy.

The slice: from minute --start, --minutes minutes; the first --functions functions of the
trace that are invoked in at least MIN_ACTIVE_MINUTES of those minutes and in at most
MAX_ACTIVE_SHARE of them (a function called nearly every minute never goes cold and
teaches nothing). One deployment of the demo model per function, keep-alive "adaptive"
(or --policy fixed), both with the platform's 600 s fixed keep-alive, i.e. 10 policy
minutes. All are scaled to zero before the replay, so that every first call is cold, as
in the simulator.

Time. The stack runs with KEEPALIVE_MINUTE_S=--minute-s (1: a policy minute lasts one
second) and AUTOSCALE_INTERVAL_S=--interval (0.2). The autoscaler turns Redis's clock into
policy minutes as floor(seconds / KEEPALIVE_MINUTE_S), so trace minute m is sent inside
one such minute of Redis's clock, at a seeded random point of CALL_WINDOW of it. Each
function invoked in minute m gets one call (how many does not matter to the policy), from
a pool large enough that a held call delays no other. A live cold start is a call the
gateway held while its deployment loaded (the usage event's cold_start, set as well on a
call held until the gateway gave up, 503 cold_start_timeout).

The simulator is bench.keepalive.replay itself, run per function with a wrapper that
records each minute's decision. Prints the slice, a per-function table (invocation-
minutes, cold starts and pre-warms, live and simulated; live pre-warms are the worker's
"autoscaler: prewarm" lines, a repeat before the load began counted once), totals, the
disagreeing minutes by what the simulator decided in them, replicas the health check
dropped, the non-200 calls, with --explain every disagreeing minute with the worker's
events around it, and, last, one JSON line.

Agreement, as observed (20 functions, 120 minutes, adaptive, two cores shared with other
work): 16 of 20 functions with exactly the simulator's cold starts, 47 live against 47
simulated, 4 of 487 invocation-minutes disagreeing, no failed call. Live pre-warms are
fewer than simulated ones by design: where the simulator unloads and pre-warms again
within the autoscaler's look-ahead, live keeps the deployment warm.

The first runs of this replay found platform faults, fixed since: the health check asked
Triton for readiness (400 while any model loads, so servers that scale models were taken
for dead and lost their replicas), a wake with no healthy server failed its deployment
for good, pre-warms started only when due (too late for a 1 s minute: now a pass and a
load time ahead, workers/autoscaler.py _lead_s), and timed-out holds were not marked cold.
With those, 0-1 of 20 functions agreed and 183-214 cold starts were seen live.

What disagreement remains comes from:

- Loads that overlap. The first minute of a slice wakes every function invoked in it at
  once (13 here); the loads queue on the worker's four threads and the cores, so a call in
  the next minute or two may be held as well (cold live, warm simulated).
- The look-ahead: more than a minute at 1 s minutes (1.2 s and up), so it can warm a call
  the simulator counts cold. At 60 s minutes it is a tenth of a minute.
- Fractional decisions. The autoscaler decides at now_ms / 1000 / KEEPALIVE_MINUTE_S, a
  fraction of a minute; the simulator at each minute's start. A keep-alive ending at a
  fraction (tail * (1 + MARGIN)) is unloaded live partway through a minute the simulator
  keeps whole. At 60 s minutes this is noise.

The modules: simulated (the slice and the simulator's answer), live (the deployments,
the calls and what the worker's log says), report (the tables and the JSON line), run
(the options and the stack)."""
