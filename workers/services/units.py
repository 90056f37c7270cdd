"""Graph deployments whose steps are Triton models of their own: the ensemble and BLS
executors (graph_editor.graphs.plan says how a graph is cut into units).

On a server, a replica of such a deployment is its units, each loaded once per server
and shared by every deployment that holds it (`UnitHold`), plus the deployment's own top
model: a Triton ensemble over the units, or the BLS orchestrator (orchestrator_model.py
with the plan as plan.json). A load takes the units in parallel, one thread each, then the
top model; a unit some other deployment already loaded is only held. Letting go of a unit
unloads it when nobody else holds it. Triton's own bookkeeping cannot do this: unloading
a composing model unloads every ensemble using it, and reloading it does not bring them
back (server#4828). So a unit is never reloaded while held, and a top model is always
unloaded before the units it runs are let go.

Each (server, unit) is serialized by a PostgreSQL advisory lock taken in the transaction
that adds or removes a hold and loads or unloads the unit, so a load and an unload of one
unit never interleave.

A deployment's plan is compiled once, on its first load, into `Deployment.compiled_dir`:
plan.json and one ONNX file per fused group of ops; a wake from zero reads them back."""
import json
import logging
import os
import shutil
import tempfile
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

from django.conf import settings
from django.db import connection, connections, transaction

from graph_editor.graphs.plan import GraphPlan, Unit, UnitTensor, graph_plan, plan_check
from graph_editor.models import ModelVersion
from workers.models import Deployment, Executor, TritonServer, UnitHold
from workers.services.triton_config import memory_share_mb
from workers.triton import client as triton
from workers.triton.repository import config_pbtxt, config_text, ensemble_config, entry_remove, entry_write

log = logging.getLogger(__name__)

ORCHESTRATOR_SOURCE = Path(__file__).resolve().parents[1] / "triton" / "orchestrator_model.py"
PLAN_FILE = "plan.json"
# A unit's dynamic batcher does not wait for a batch to fill: it joins what queued while
# its instance was busy. Waiting would be paid at every hop (make bench-graph: 500 us per
# unit made the demo graph's ensemble p50 4.6 ms); the deployment's own delay applies once,
# at the orchestrator.
UNIT_QUEUE_DELAY_US = 0


# The compiled plan, kept beside the uploads

def _write_atomically(path: Path, data: bytes) -> None:
    """A reader (a load copying the file, the nodes endpoint) sees the old file or the new
    one, never half of one, whoever else compiles the same plan at the same time."""
    handle, staging = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(staging, path)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise


def _plan_dump(plan: GraphPlan, directory: Path) -> None:
    """plan.json last: once it exists, every segment file it names does."""
    directory.mkdir(parents=True, exist_ok=True)
    units = []
    for unit in plan.units:
        data = asdict(unit)
        data.pop("onnx_bytes")
        if unit.kind == "segment":
            _write_atomically(directory / f"{unit.key}.onnx", unit.onnx_bytes)
        units.append(data)
    text = json.dumps({"units": units, "inputs": plan.inputs, "outputs": plan.outputs,
                       "output_refs": plan.output_refs, "has_switch": plan.has_switch, "batched": plan.batched,
                       "node_units": plan.node_units})
    _write_atomically(directory / PLAN_FILE, text.encode())


def _plan_read(directory: Path) -> GraphPlan:
    data = json.loads((directory / PLAN_FILE).read_text())
    units = [Unit(**{**u, "inputs": [UnitTensor(**t) for t in u["inputs"]],
                     "outputs": [UnitTensor(**t) for t in u["outputs"]]}) for u in data.pop("units")]
    data["output_refs"] = [tuple(pair) for pair in data["output_refs"]]
    return GraphPlan(units=units, **data)


def deployment_plan(deployment: Deployment) -> GraphPlan:
    """The deployment's units, compiled on first use. Raises PlatformError (invalid_graph,
    unfusable) for a graph its executor cannot run."""
    directory = deployment.compiled_dir
    if (directory / PLAN_FILE).exists():
        return _plan_read(directory)
    plan = graph_plan(tenant=deployment.tenant, spec=deployment.graph_version.spec)
    plan_check(plan, deployment.executor)
    _plan_dump(plan, directory)
    return plan


def compiled_remove(deployment: Deployment) -> None:
    """Once a graph deployment is undeployed its compiled units serve nothing; a model
    deployment has none."""
    if deployment.is_graph:
        shutil.rmtree(deployment.compiled_dir, ignore_errors=True)


# Names and configs

def unit_max_batch_size(deployment: Deployment, unit: Unit) -> int:
    return deployment.max_batch_size if unit.batched else 0


def unit_triton_name(deployment: Deployment, unit: Unit) -> str:
    """Namespaced by tenant; the hardware and batch size are part of the name, since units
    that differ in them cannot be one loaded model."""
    return f"t{deployment.tenant_id}--{unit.key}--{deployment.hardware}-b{unit_max_batch_size(deployment, unit)}"


def _unit_config(deployment: Deployment, unit: Unit, server: TritonServer, name: str, instances: int) -> str:
    native_onnx = "onnxruntime" in server.backends
    return config_pbtxt(
        triton_name=name, inputs=[t.signature() for t in unit.inputs], outputs=[t.signature() for t in unit.outputs],
        has_batch_dim=unit.batched, native_onnx=native_onnx, gpu=deployment.hardware == "gpu",
        max_batch_size=unit_max_batch_size(deployment, unit), instances=instances,
        queue_delay_us=UNIT_QUEUE_DELAY_US, preferred_batch_sizes=deployment.preferred_batch_sizes,
        memory_limit_mb=None if native_onnx else memory_share_mb(deployment, server),
    )


def _unit_file(deployment: Deployment, unit: Unit) -> Path:
    if unit.kind == "segment":
        return deployment.compiled_dir / f"{unit.key}.onnx"
    return ModelVersion.unscoped.get(pk=unit.model_version, tenant_id=deployment.tenant_id).absolute_path


def _used(plan: GraphPlan) -> set[str]:
    """The refs some unit reads or the graph returns. A model unit declares all its model's
    outputs (it is shared, and another graph may read another one), but an ensemble refuses
    a step output nobody reads, and the orchestrator need not ask for one."""
    return {t.ref for unit in plan.units for t in unit.inputs} | {ref for _, ref in plan.output_refs}


def _ensemble_text(deployment: Deployment, plan: GraphPlan, names: list[str]) -> str:
    """Ensemble tensors: graph inputs and outputs by their names (a unit reading a tensor
    that is also a graph output reads it by that name), the others by their refs."""
    exported, used = {ref: name for name, ref in plan.output_refs}, _used(plan)
    steps = []
    for unit, name in zip(plan.units, names, strict=True):
        steps.append((name, {t.name: exported.get(t.ref, t.ref) for t in unit.inputs},
                      {t.name: exported.get(t.ref, t.ref) for t in unit.outputs if t.ref in used}))
    return config_text(ensemble_config(
        triton_name=deployment.triton_name, inputs=plan.inputs, outputs=plan.outputs,
        max_batch_size=deployment.max_batch_size if plan.batched else 0, steps=steps))


def _orchestrator_files(plan: GraphPlan, names: list[str]) -> dict[str, Path | bytes]:
    """The BLS orchestrator's model.py and its plan.json (orchestrator_model.py reads it)."""
    steps, used = [], _used(plan)
    for unit, name in zip(plan.units, names, strict=True):
        outputs = [t for t in unit.outputs if t.ref in used]
        steps.append({"model": name, "nodes": unit.nodes,
                      "inputs": {t.name: t.ref for t in unit.inputs},
                      "column_inputs": [t.name for t in unit.inputs if unit.batched and len(t.shape) == 1],
                      "outputs": {t.name: t.ref for t in outputs},
                      "output_specs": {t.ref: {"datatype": t.datatype, "shape": t.signature()["shape"]}
                                       for t in outputs}})
    text = json.dumps({"batched": plan.batched, "inputs": [t["name"] for t in plan.inputs],
                       "outputs": [{"name": name, "ref": ref} for name, ref in plan.output_refs], "steps": steps})
    return {"model.py": ORCHESTRATOR_SOURCE, PLAN_FILE: text.encode()}


def _orchestrator_text(deployment: Deployment, plan: GraphPlan, instances: int) -> str:
    return config_pbtxt(triton_name=deployment.triton_name, inputs=plan.inputs, outputs=plan.outputs,
                        has_batch_dim=plan.batched, native_onnx=False, gpu=False,
                        max_batch_size=deployment.max_batch_size, instances=instances,
                        queue_delay_us=deployment.max_queue_delay_us,
                        preferred_batch_sizes=deployment.preferred_batch_sizes)


# Holding, loading and letting go

def _lock(server: TritonServer, name: str) -> None:
    """The (server, unit) advisory lock, until the end of the current transaction."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [server.pk, zlib.crc32(name.encode()) - 2**31])


def unit_instances(deployment: Deployment, unit: Unit, instances: int) -> int:
    """A unit's Triton instances: the most that `node_instances` asks for its nodes, else
    the deployment's current count."""
    asked = [deployment.node_instances[node] for node in unit.nodes if node in deployment.node_instances]
    return max(asked) if asked else instances


def _unit_hold_and_load(deployment: Deployment, server: TritonServer, unit: Unit, name: str,
                        instances: int) -> float:
    """Hold the unit for the deployment; load it unless the server has it with these
    instances. A unit another deployment also holds keeps the instances it was loaded
    with; one held by this deployment alone is reloaded with the new count (the ensemble
    or orchestrator is reloaded after it, see units_load). Seconds spent loading (0 when it
    was there). Runs in a thread of its own: its connection is closed."""
    try:
        with transaction.atomic():
            _lock(server, name)
            UnitHold.objects.get_or_create(server=server, triton_name=name, deployment=deployment)
            if triton.model_ready(server.http_url, name):
                shared = UnitHold.objects.filter(server=server, triton_name=name).exclude(deployment=deployment)
                if shared.exists() or triton.model_instances(server.http_url, name) == instances:
                    return 0.0
            entry_write(repository=Path(server.repository_path), triton_name=name,
                        onnx_path=_unit_file(deployment, unit),
                        config=_unit_config(deployment, unit, server, name, instances),
                        native_onnx="onnxruntime" in server.backends)
            return triton.model_load(server.http_url, name, timeout=settings.TRITON_LOAD_TIMEOUT_S)
    finally:
        connections.close_all()


def units_load(deployment: Deployment, server: TritonServer, instances: int) -> float:
    """Load the deployment on `server`: its units in parallel, then its ensemble or
    orchestrator. Seconds it took. Raises PlatformError, TritonError, OSError; the units it
    held stay held for the caller's `units_release`."""
    started = time.monotonic()
    plan = deployment_plan(deployment)
    names = [unit_triton_name(deployment, unit) for unit in plan.units]
    with ThreadPoolExecutor(max_workers=min(len(plan.units), 8) or 1) as pool:
        futures = [pool.submit(_unit_hold_and_load, deployment, server, unit, name,
                               unit_instances(deployment, unit, instances))
                   for unit, name in zip(plan.units, names, strict=True)]
    for future in futures:
        future.result()  # the first unit that failed raises its error here
    if deployment.executor == Executor.ENSEMBLE:
        entry_write(repository=Path(server.repository_path), triton_name=deployment.triton_name,
                    config=_ensemble_text(deployment, plan, names))
    else:
        entry_write(repository=Path(server.repository_path), triton_name=deployment.triton_name,
                    config=_orchestrator_text(deployment, plan, instances), files=_orchestrator_files(plan, names))
    triton.model_load(server.http_url, deployment.triton_name, timeout=settings.TRITON_LOAD_TIMEOUT_S)
    return time.monotonic() - started


def units_release(deployment: Deployment, server: TritonServer, *, unload: bool = True) -> None:
    """Let go of the deployment's units on `server` (its top model is already unloaded);
    a unit nobody else holds is unloaded, unless `unload` is false (the server is gone)."""
    names = list(UnitHold.objects.filter(deployment=deployment, server=server).values_list("triton_name", flat=True))
    for name in names:
        with transaction.atomic():
            _lock(server, name)
            UnitHold.objects.filter(deployment=deployment, server=server, triton_name=name).delete()
            if unload and not UnitHold.objects.filter(server=server, triton_name=name).exists():
                try:
                    triton.model_unload(server.http_url, name)
                except triton.TritonError as exc:
                    log.warning("unload of unit %s on %s failed: %s", name, server.name, exc)
                entry_remove(repository=Path(server.repository_path), triton_name=name)
                log.info("unit %s unloaded from %s: its last holder let go", name, server.name)
