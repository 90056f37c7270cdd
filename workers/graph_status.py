"""A graph deployment's nodes as the editor shows them: which Triton model (unit) runs
each node, whether it is loaded, and that unit's statistics from Triton.

- A fused deployment is one unit running every step: its nodes report together.
- Under an ensemble or a BLS orchestrator, each model node is a unit of its own and each
  group of built-in ops is one fused unit (graph_editor.graphs.plan). A unit shared with
  another deployment reports the calls of every graph that uses it (`shared`).

Calls, failures and compute time are Triton's cumulative statistics
(`/v2/models/stats`: success and fail counts, success ns). The p50 is Triton's own latency
summary (`nv_inference_request_summary_us`, quantile 0.5, over Triton's sliding window),
read from the server's metrics endpoint when it has one (local servers run with
`--metrics-config=summary_latencies=true`)."""
import logging
import math
import re
import urllib.request

from gateway.contract.errors import PlatformError
from workers.models import Deployment, DeploymentState, Executor, ReplicaState, UnitHold
from workers.services.units import deployment_plan, unit_triton_name
from workers.triton import client as triton

log = logging.getLogger(__name__)

_SUMMARY = re.compile(r'^nv_inference_request_summary_us\{(?P<labels>[^}]*)\}\s+(?P<value>\S+)$', re.MULTILINE)
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')

STATES = {DeploymentState.COLD: "cold", DeploymentState.FAILED: "failed", DeploymentState.PENDING: "loading",
          DeploymentState.LOADING: "loading", DeploymentState.UNLOADING: "cold", DeploymentState.UNDEPLOYED: "cold"}


def p50_by_model(metrics_url: str, timeout: float = 2.0) -> dict[str, float]:
    """Triton's median request latency per model (ms), from its Prometheus summary."""
    try:
        with urllib.request.urlopen(metrics_url, timeout=timeout) as response:
            text = response.read().decode(errors="replace")
    except (OSError, ValueError) as exc:
        log.info("metrics of %s unreadable: %s", metrics_url, exc)
        return {}
    medians = {}
    for match in _SUMMARY.finditer(text):
        labels = dict(_LABEL.findall(match["labels"]))
        if labels.get("quantile") != "0.5":
            continue
        value = float(match["value"])
        if not math.isnan(value):
            medians[labels.get("model", "")] = round(value / 1000, 3)
    return medians


def _units(deployment: Deployment) -> list[dict]:
    """[{name (shown), triton_name, kind, nodes}] in run order."""
    spec_nodes = [n["id"] for n in deployment.graph_version.spec.get("nodes", [])
                  if n.get("kind") not in ("input", "output")]
    if deployment.executor not in (Executor.ENSEMBLE, Executor.BLS):
        return [{"name": "fused", "triton_name": deployment.triton_name, "kind": "fused", "nodes": spec_nodes}]
    try:
        plan = deployment_plan(deployment)
    except PlatformError:  # its graph no longer compiles: the deployment failed, with the reason
        return []
    units = [{"name": unit.nodes[0] if unit.kind == "model" else "+".join(unit.nodes),
              "triton_name": unit_triton_name(deployment, unit), "kind": unit.kind, "nodes": unit.nodes}
             for unit in plan.units]
    top = "ensemble" if deployment.executor == Executor.ENSEMBLE else "orchestrator"
    return [*units, {"name": top, "triton_name": deployment.triton_name, "kind": top, "nodes": []}]


def deployment_graph_status(deployment: Deployment) -> dict:
    """The editor's view of a graph deployment (see the module docstring); Triton is asked
    only while the deployment has a ready replica, and a server that does not answer
    leaves the statistics empty rather than failing."""
    units = _units(deployment)
    replica = deployment.replica_set.filter(state=ReplicaState.READY).select_related("server").first()
    loaded, stats, medians = set(), {}, {}
    if deployment.state == DeploymentState.READY and replica is not None:
        server = replica.server
        try:
            loaded = {m["name"] for m in triton.repository_index(server.http_url) if m.get("state") == "READY"}
            stats = {s["name"]: s for s in triton.model_statistics(server.http_url)}
        except triton.TritonError as exc:
            log.info("statistics of %s unreadable: %s", server.name, exc)
        if server.metrics_url:
            medians = p50_by_model(server.metrics_url)
    holders: dict[str, int] = {}
    if replica is not None:
        for name in UnitHold.objects.filter(server=replica.server).values_list("triton_name", flat=True):
            holders[name] = holders.get(name, 0) + 1
    shown = []
    for unit in units:
        name = unit["triton_name"]
        if deployment.state != DeploymentState.READY:
            state = STATES.get(deployment.state, "cold")
        elif loaded and name not in loaded:
            state = "failed"  # its server lost it; the reconcile task loads the deployment again
        else:
            state = "loaded"  # Triton says so, or could not be asked: the deployment's own word
        inference = stats.get(name, {}).get("inference_stats", {})
        calls = int(inference.get("success", {}).get("count", 0))
        success_ns = int(inference.get("success", {}).get("ns", 0))
        shown.append({"name": unit["name"], "kind": unit["kind"], "nodes": unit["nodes"], "state": state,
                      "calls": calls, "failures": int(inference.get("fail", {}).get("count", 0)),
                      "success_ns": success_ns, "mean_ms": round(success_ns / calls / 1e6, 3) if calls else None,
                      "p50_ms": medians.get(name), "shared": holders.get(name, 0) > 1})
    nodes = {node: {"unit": unit["name"], "state": unit["state"], "fused": len(unit["nodes"]) > 1}
             for unit in shown for node in unit["nodes"]}
    return {"deployment": deployment.pk, "executor": deployment.executor, "state": deployment.state,
            "units": shown, "nodes": nodes}
