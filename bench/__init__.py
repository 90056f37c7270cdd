"""Benchmarks and replays of the platform, each runnable as `python -m bench.<name>`.

The top layer: a benchmark may import any part of the platform, and nothing of the
platform imports it. Every one prints a table and, last, one line of JSON.

- gateway (`make bench-gateway`): the gateway against Triton direct, at 1, 8 and 32
  clients over HTTP with JSON and binary tensors and over gRPC, with every admission
  check and metering on; with --scaling, 1 against 2 gateway processes and a rate limit
  they share. Its own Triton, Redis and gateway, nothing shared.
- coldstart (`make bench-coldstart`): the first response from zero through the real
  stack against Triton's own load time, and the platform's overhead between them.
- isolation (`make bench-isolation`): noisy neighbours, tenant B's p50/p99 and errors
  while tenant A floods the same Triton with valid, malformed and memory-hog requests,
  and whether Triton stays up.
- keepalive (`make bench-keepalive`): the keep-alive policies (fixed 10 and 60 minutes,
  adaptive) replayed on an Azure Functions trace: cold starts, idle warm memory,
  pre-warms. Pure simulation, no stack.
- replay (`make bench-replay`): a slice of that trace replayed live, one trace minute
  per second, against the real stack and its autoscaler, compared call by call with the
  simulator.
- graph (`make bench-graph`): the demo graph without its switch, deployed fused, against
  its classifier deployed alone (p50 at 1 client, req/s at 32, cold start from zero) and
  against the client calling its steps one gateway call each.

Shared parts: stack (the platform's processes on free ports, also the test suite's
through tests/stack.py, and the scratch stack of the benchmarks that need the real
one), load (the closed-loop HTTP/1.1 and gRPC load generators)."""
