"""Benchmark of a deployed graph: `python -m bench.graph` (`make bench-graph`).

Starts the real stack on free ports (bench/stack.py) on a scratch database and Redis
database of its own and deploys, in one tenant:

- `digits`: the digits classifier alone (graph_editor/samples.py), input X FP32 [-1, 64];
- `digits-graph`: the demo graph without its switch, built here from the demo's pieces:
  image UINT8 [-1, 8, 8] -> cast FP32 -> flatten -> the classifier -> topk (k=1) and
  label_lookup of its label -> out (label, name, score), served as one fused ONNX model;
- one deployment per step of that graph for the client to chain: each built-in op as a
  graph of that one op (`step-cast`, `step-flatten`, `step-topk`, `step-label-lookup`),
  and the classifier as `digits` above.

Every call goes through the gateway with JSON tensors (KServe v2 HTTP, every output
returned as JSON), on one image of the digits data set: its 64 pixels as UINT8 [1, 8, 8]
for the graph and as FP32 [1, 64] for the classifier alone. It measures:

1. p50 latency at 1 client and requests/s at --clients (default 32) clients, closed loop
   (bench/load.py), of the graph against the classifier alone;
2. p50 of one request answered by the graph against the same request answered by the
   client calling the five steps in sequence, one gateway call per step, each step's
   inputs taken from the JSON answers before it (both timed by the same keep-alive
   client, one call at a time);
3. cold start: scale to zero, wait until cold, and time the first call (a new
   connection) until its answer, --runs times, median; for the graph and the classifier;
4. the same graph under the two executors that keep its steps apart, a Triton ensemble
   (`digits-graph-ensemble`) and the BLS orchestrator (`digits-graph-bls`): p50 at 1
   client, req/s at --clients and cold start (both scaled to zero first, since they share
   their steps), against the fused graph: the figures behind the `auto` executor's choice.

The goals (issue 11): graph p50 <= 1.3x the model's, graph throughput >= 0.7x, the chain
>= 2x slower than the graph, a cold graph <= 1.5x a cold classifier. Prints a table with
PASS/FAIL per goal and, last, one line of JSON; exits 0 either way (a measurement)."""
import argparse
import http.client
import json
import statistics
import sys
import time

from bench.load import build_request, http_load, run_load
from bench.stack import PlatformStack, scratch_stack, scratch_stop, wait

MODEL = "digits"
GRAPH = "digits-graph"
# The same graph under the executors that keep its steps apart (the fused one is GRAPH).
EXECUTORS = {"fused": GRAPH, "ensemble": "digits-graph-ensemble", "bls": "digits-graph-bls"}
# The client's chain: (deployment, {its input: the output of an earlier call that feeds it}).
# The first call takes the graph's image; the outputs named y are the latest call's.
CHAIN = [("step-cast", {}), ("step-flatten", {"x": "y"}), (MODEL, {"X": "y"}), ("step-topk", {"x": "probabilities"}),
         ("step-label-lookup", {"label": "label"})]
GOALS = {  # key: (what, the goal's bound, whether the figure must be at most the bound)
    "p50_ratio_vs_model": ("graph p50 / model p50, 1 client", 1.3, True),
    "rps_ratio_vs_model_c32": ("graph req/s / model req/s, {clients} clients", 0.7, False),
    "speedup_vs_client_chain": ("client chain p50 / graph p50", 2.0, False),
    "coldstart_ratio_vs_largest_model": ("graph cold start / model cold start", 1.5, True),
}


def tensor(name: str, datatype: str, shape: list[int]) -> dict:
    return {"name": name, "datatype": datatype, "shape": shape}


def edge(source: str, target: str) -> dict:
    return {"from": source, "to": target}


def graph_without_switch_spec(classifier: int) -> dict:
    """The demo graph (digits_pipeline_spec) without its switch and fallback: the label
    is the classifier's, its name looked up, the score topk's."""
    from graph_editor.samples import DIGIT_NAMES

    return {
        "nodes": [
            {"id": "in", "kind": "input", "tensors": [tensor("image", "UINT8", [-1, 8, 8])]},
            {"id": "prep", "kind": "op", "op": "cast", "params": {"to": "FP32"}},
            {"id": "flat", "kind": "op", "op": "flatten"},
            {"id": "clf", "kind": "model", "model_version": classifier},
            {"id": "top", "kind": "op", "op": "topk", "params": {"k": 1}},
            {"id": "names", "kind": "op", "op": "label_lookup", "params": {"labels": DIGIT_NAMES}},
            {"id": "out", "kind": "output"},
        ],
        "edges": [edge("in.image", "prep.x"), edge("prep.y", "flat.x"), edge("flat.y", "clf.X"),
                  edge("clf.probabilities", "top.x"), edge("clf.label", "names.x"), edge("clf.label", "out.label"),
                  edge("names.y", "out.name"), edge("top.values", "out.score")],
    }


def one_op_spec(op: str, params: dict, inputs: list[dict], outputs: list[str]) -> dict:
    """A graph of one built-in op: its input port `x` fed by the graph's one input, each
    of its output ports a graph output of the same name."""
    return {
        "nodes": [{"id": "in", "kind": "input", "tensors": inputs}, {"id": "op", "kind": "op", "op": op,
                                                                     "params": params},
                  {"id": "out", "kind": "output"}],
        "edges": [edge(f"in.{inputs[0]['name']}", "op.x")] + [edge(f"op.{port}", f"out.{port}") for port in outputs],
    }


def step_specs() -> dict[str, dict]:
    from graph_editor.samples import DIGIT_NAMES

    return {
        "step-cast": one_op_spec("cast", {"to": "FP32"}, [tensor("image", "UINT8", [-1, 8, 8])], ["y"]),
        "step-flatten": one_op_spec("flatten", {}, [tensor("x", "FP32", [-1, 8, 8])], ["y"]),
        "step-topk": one_op_spec("topk", {"k": 1}, [tensor("x", "FP32", [-1, 10])], ["values", "indices"]),
        "step-label-lookup": one_op_spec("label_lookup", {"labels": DIGIT_NAMES}, [tensor("label", "INT64", [-1])],
                                         ["y"]),
    }


def deploy_all(tenant) -> dict[str, int]:
    """Every deployment of the benchmark, loaded; their ids by name."""
    from graph_editor.samples import digits_classifier_onnx
    from graph_editor.services import model_version_upload
    from graph_editor.services_graphs import graph_create, graph_version_create
    from workers.models import Deployment, DeploymentState
    from workers.services import deployment_create

    version = model_version_upload(tenant=tenant, model_name=MODEL, chunks=[digits_classifier_onnx()])
    deployments = {MODEL: deployment_create(tenant=tenant, model_version_id=version.pk, name=MODEL)}
    for name, spec in {GRAPH: graph_without_switch_spec(version.pk), **step_specs()}.items():
        graph = graph_create(tenant=tenant, name=name)
        graph_version = graph_version_create(tenant=tenant, graph_id=graph.pk, spec=spec, message="bench")
        deployments[name] = deployment_create(tenant=tenant, graph_version_id=graph_version.pk, name=name,
                                              executor="fused" if name == GRAPH else "auto")
        if name == GRAPH:
            for executor in ("ensemble", "bls"):
                deployments[EXECUTORS[executor]] = deployment_create(
                    tenant=tenant, graph_version_id=graph_version.pk, name=EXECUTORS[executor], executor=executor)
    for name, deployment in deployments.items():
        loaded = wait(lambda pk=deployment.pk: Deployment.unscoped.get(pk=pk), 120, f"{name} to load",
                      until=lambda d: d.state in (DeploymentState.READY, DeploymentState.FAILED))
        if loaded.state != DeploymentState.READY:
            raise SystemExit(f"{name} failed to load: {loaded.error}")
    return {name: deployment.pk for name, deployment in deployments.items()}


def bodies() -> dict[str, bytes]:
    """The one image, as the graph takes it and as the classifier alone takes it."""
    from graph_editor.samples import digits_dataset

    pixels = digits_dataset()[0][100]
    return {
        GRAPH: json.dumps({"inputs": [{**tensor("image", "UINT8", [1, 8, 8]),
                                       "data": pixels.astype("uint8").tolist()}]}).encode(),
        MODEL: json.dumps({"inputs": [{**tensor("X", "FP32", [1, 64]), "data": pixels.tolist()}]}).encode(),
    }


class Client:
    """One keep-alive connection to the gateway, one call at a time, JSON in and out."""

    def __init__(self, port: int, key: str):
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    def infer(self, name: str, body: bytes) -> dict[str, dict]:
        """The answer's outputs by name; raises SystemExit on anything but 200."""
        self.connection.request("POST", f"/v2/models/{name}/infer", body, self.headers)
        response = self.connection.getresponse()
        payload = response.read()
        if response.status != 200:
            raise SystemExit(f"{name} answered {response.status}: {payload[:300]!r}")
        return {output["name"]: output for output in json.loads(payload)["outputs"]}

    def chain(self, image_body: bytes) -> dict[str, dict]:
        """The graph's steps called in sequence, each fed outputs of the calls before it;
        every output seen, by name (a later step's output replaces an earlier one's)."""
        seen = self.infer(CHAIN[0][0], image_body)
        for name, feeds in CHAIN[1:]:
            body = json.dumps({"inputs": [
                {**tensor(port, seen[source]["datatype"], seen[source]["shape"]), "data": seen[source]["data"]}
                for port, source in feeds.items()]}).encode()
            seen.update(self.infer(name, body))
        return seen

    def close(self) -> None:
        self.connection.close()


def timed(call, seconds: float, warmup: int = 20) -> list[float]:
    """Seconds per call of `call`, called one at a time for `seconds` after `warmup` calls."""
    for _ in range(warmup):
        call()
    times = []
    until = time.perf_counter() + seconds
    while (started := time.perf_counter()) < until:
        call()
        times.append(time.perf_counter() - started)
    return times


def cold_start_ms(stack: PlatformStack, tenant, deployment_id: int, name: str, key: str, body: bytes,
                  also_cold: tuple[int, ...] = ()) -> float:
    """Scale to zero (with `also_cold`: deployments sharing its steps, which would keep
    them loaded), wait until cold, and time the first call on a new connection."""
    from workers.models import Deployment, DeploymentState
    from workers.services import deployment_scale_to_zero

    stack.wait_quiet(60)
    for pk in (deployment_id, *also_cold):
        if Deployment.unscoped.get(pk=pk).state == DeploymentState.READY:
            deployment_scale_to_zero(tenant=tenant, deployment_id=pk)
        wait(lambda pk=pk: Deployment.unscoped.get(pk=pk).state, 30, f"{name} to go cold",
             until=lambda state: state == DeploymentState.COLD)
    time.sleep(0.3)
    client = Client(stack.gateway_port, key)
    try:
        started = time.perf_counter()
        client.infer(name, body)
        return (time.perf_counter() - started) * 1000
    finally:
        client.close()


def measure(stack: PlatformStack, tenant, key: str, ids: dict[str, int], args) -> dict:
    body = bodies()
    requests = {name: build_request(stack.gateway_port, f"/v2/models/{name}/infer", body[name], None, key)
                for name in (MODEL, GRAPH)}
    client = Client(stack.gateway_port, key)
    try:
        graph_answer, model_answer = client.infer(GRAPH, body[GRAPH]), client.infer(MODEL, body[MODEL])
        chain_answer = client.chain(body[GRAPH])
        if not graph_answer["label"]["data"] == model_answer["label"]["data"] == chain_answer["label"]["data"] \
                or graph_answer["name"]["data"] != chain_answer["y"]["data"]:
            raise SystemExit(f"the answers differ: graph {graph_answer}, model {model_answer}, chain {chain_answer}")
        print(f"the image is a {graph_answer['label']['data'][0]} ({graph_answer['name']['data'][0]}), "
              f"say the graph, the classifier and the chain", flush=True)

        load = {}
        for clients in (1, args.clients):
            for name in (MODEL, GRAPH):
                stack.wait_quiet(60)
                result = run_load(http_load(stack.gateway_port, requests[name]), clients, args.seconds, 1.0)
                if result["errors"]:
                    raise SystemExit(f"{name} at {clients} clients: {result['errors']} errors {result['statuses']}")
                load[(name, clients)] = result
                print(f"  {name:<14}{clients:>3} clients: p50 {result['p50_ms']:.2f} ms, {result['rps']:.0f} req/s",
                      flush=True)

        stack.wait_quiet(60)
        graph_one = timed(lambda: client.infer(GRAPH, body[GRAPH]), args.seconds)
        chain = timed(lambda: client.chain(body[GRAPH]), args.seconds)
    finally:
        client.close()

    executors = {}
    for executor, name in EXECUTORS.items():
        if executor == "fused":
            executors[executor] = {"p50_ms": round(load[(GRAPH, 1)]["p50_ms"], 2),
                                   "rps": round(load[(GRAPH, args.clients)]["rps"], 1)}
            continue
        request = build_request(stack.gateway_port, f"/v2/models/{name}/infer", body[GRAPH], None, key)
        figures = {}
        for clients in (1, args.clients):
            stack.wait_quiet(60)
            result = run_load(http_load(stack.gateway_port, request), clients, args.seconds, 1.0)
            if result["errors"]:
                raise SystemExit(f"{name} at {clients} clients: {result['errors']} errors {result['statuses']}")
            figures["p50_ms" if clients == 1 else "rps"] = round(result["p50_ms" if clients == 1 else "rps"], 2)
        executors[executor] = figures
        print(f"  {executor:<9} p50 {figures['p50_ms']:.2f} ms, {figures['rps']:.0f} req/s at {args.clients} "
              "clients", flush=True)

    cold = {name: [] for name in (MODEL, *EXECUTORS.values())}
    sharing = tuple(ids[EXECUTORS[e]] for e in ("ensemble", "bls"))
    for run in range(1, args.runs + 1):
        for name in cold:
            others = tuple(pk for pk in sharing if pk != ids[name]) if ids[name] in sharing else ()
            request_body = body[MODEL if name == MODEL else GRAPH]
            cold[name].append(cold_start_ms(stack, tenant, ids[name], name, key, request_body, also_cold=others))
        print(f"  cold start {run}: model {cold[MODEL][-1]:.0f} ms, "
              + ", ".join(f"{e} {cold[n][-1]:.0f} ms" for e, n in EXECUTORS.items()), flush=True)
    for executor, name in EXECUTORS.items():
        executors[executor]["cold_ms"] = round(statistics.median(cold[name]), 1)

    def ms(values: list[float]) -> float:
        return round(statistics.median(values) * 1000, 2)

    figures = {
        "model_p50_ms": round(load[(MODEL, 1)]["p50_ms"], 2), "graph_p50_ms": round(load[(GRAPH, 1)]["p50_ms"], 2),
        "model_rps": round(load[(MODEL, args.clients)]["rps"], 1),
        "graph_rps": round(load[(GRAPH, args.clients)]["rps"], 1),
        "graph_call_p50_ms": ms(graph_one), "chain_p50_ms": ms(chain), "chain_calls": len(CHAIN),
        "model_cold_ms": round(statistics.median(cold[MODEL]), 1),
        "graph_cold_ms": round(statistics.median(cold[GRAPH]), 1),
        "model_cold_runs_ms": [round(v, 1) for v in cold[MODEL]],
        "graph_cold_runs_ms": [round(v, 1) for v in cold[GRAPH]],
    }
    return {
        "p50_ratio_vs_model": round(figures["graph_p50_ms"] / figures["model_p50_ms"], 3),
        "rps_ratio_vs_model_c32": round(figures["graph_rps"] / figures["model_rps"], 3),
        "speedup_vs_client_chain": round(figures["chain_p50_ms"] / figures["graph_call_p50_ms"], 3),
        "coldstart_ratio_vs_largest_model": round(figures["graph_cold_ms"] / figures["model_cold_ms"], 3),
        **figures,
        "executors": executors,
        "clients": args.clients, "seconds": args.seconds, "runs": args.runs, "tensors": "json",
    }


def report(result: dict) -> None:
    print(f"\n{'':<48}{'model':>12}{'graph':>12}")
    print(f"{'p50 at 1 client, ms':<48}{result['model_p50_ms']:>12.2f}{result['graph_p50_ms']:>12.2f}")
    print(f"{'req/s at ' + str(result['clients']) + ' clients':<48}{result['model_rps']:>12.1f}"
          f"{result['graph_rps']:>12.1f}")
    print(f"{'cold start (median of ' + str(result['runs']) + '), ms':<48}{result['model_cold_ms']:>12.1f}"
          f"{result['graph_cold_ms']:>12.1f}")
    print(f"{'p50 of one request, one call at a time, ms':<48}{'':>12}{result['graph_call_p50_ms']:>12.2f}")
    print(f"{'  the same, the client chaining the steps, ms':<48}{'':>12}{result['chain_p50_ms']:>12.2f}"
          f"  ({result['chain_calls']} calls)")
    print(f"\n{'the same graph, by executor':<48}{'p50 ms':>12}{'req/s':>12}{'cold ms':>12}")
    for executor, figures in result["executors"].items():
        print(f"{executor:<48}{figures['p50_ms']:>12.2f}{figures['rps']:>12.1f}{figures['cold_ms']:>12.1f}")
    print(f"\n{'goal':<48}{'figure':>10}{'bound':>10}  verdict")
    for key, (what, bound, at_most) in GOALS.items():
        value = result[key]
        met = value <= bound if at_most else value >= bound
        goal = ("<= " if at_most else ">= ") + str(bound)
        print(f"{what.format(clients=result['clients']):<48}{value:>10.3f}{goal:>10}  {'PASS' if met else 'FAIL'}")
        result[f"{key}_goal_met"] = met


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.graph", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10, help="seconds of each load phase (default 10)")
    parser.add_argument("--clients", type=int, default=32, help="clients of the throughput phase (default 32)")
    parser.add_argument("--runs", type=int, default=5, help="cold starts to time for each (default 5)")
    args = parser.parse_args(argv)

    stack = scratch_stack("graph", redis_db=5)
    from tenants.models import Tenant
    from tenants.services import api_key_create

    stack.start()
    try:
        stack.register_servers()
        tenant = Tenant.objects.create(slug="bench", name="Bench")
        ids = deploy_all(tenant)
        _, key = api_key_create(tenant=tenant, label="bench", scopes=["infer"])
        print(f"stack up, {len(ids)} deployments ready; logs in {stack.workdir}", flush=True)
        result = measure(stack, tenant, key, ids, args)
    finally:
        scratch_stop(stack)
    report(result)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
