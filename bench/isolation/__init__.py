"""Noisy-neighbour benchmark: `python -m bench.isolation` (`make bench-isolation`).

Starts the real stack on free ports (Triton, a Celery worker, the gateway, the metering
consumer; bench/stack.py) on a scratch database and Redis database of its own, with two
tenants on the same Triton server:

- B, the quiet one: the digits model, kept warm (min_instances=1), its rate limit lifted
  so that it measures the platform rather than its own quota;
- A, the noisy one: digits too, and graph_editor.samples.memory_hog_onnx ("hog": a request
  allocates max(n) * 4 bytes), under a tenant rate limit (200 req/s, burst 50).

Phase 1 (baseline): B alone, a closed loop of --clients clients calling digits with JSON
tensors through the gateway over keep-alive connections. Phase 2 (noise): the same B
load while --flooders coroutines of A send, as fast as they can, a mix (--mix) of valid
digits calls, malformed HTTP requests and malformed gRPC requests, and --hog-flooders
more send hog requests with n = --hog-n (a hog call takes seconds: in the mix it would
soon hold every flooder). Phase 3 (after): B alone again, to show whether the damage
lasts. A's flood runs in one process of its own, so that its event loop does not delay
B's clients.

All the while a thread polls Triton's /v2/health/live every 0.5 s and follows the
tritonserver process and its model (stub) processes. Every client call has a timeout,
so the bench reports a Triton that died or hangs instead of waiting for it.

Prints B's latency and errors per phase, A's outcomes per request kind (gRPC codes in
HTTP's columns: INVALID_ARGUMENT as 400, RESOURCE_EXHAUSTED as 429, UNAVAILABLE as 5xx),
Triton's health and the CPU each part used, then one JSON line. Exits 1 when B's error
rate under noise is above --max-error-rate, or when more than --max-triton-failures
health polls failed or tritonserver was restarted or ended.

The modules: kinds (the requests each tenant sends and how outcomes are counted), clients
(B's closed loop and A's flood), health (Triton's health and the CPU each part used),
report (the tables and the JSON line), run (the stack, the tenants and the three phases)."""
