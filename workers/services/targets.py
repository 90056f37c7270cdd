"""What one replica of a deployment is in Triton, whatever its executor: loading it on a
server and removing it from one.

- model and fused: one entry, the ONNX file behind the Python runner (or native
  onnxruntime);
- ensemble and bls: the graph's units, shared with other deployments, under the
  deployment's own ensemble or orchestrator (workers/services/units.py)."""
from pathlib import Path

from django.conf import settings

from workers.models import Deployment, TritonServer, UnitHold
from workers.services.fused import deployment_onnx_path, fused_remove
from workers.services.triton_config import deployment_config_pbtxt
from workers.services.units import compiled_remove, units_load, units_release
from workers.triton import client as triton
from workers.triton.repository import entry_remove, entry_write


def replica_triton_load(deployment: Deployment, server: TritonServer, instances: int,
                        reserved_mb: float | None = None) -> float:
    """Write and load (or reload) the deployment on `server`; the seconds Triton took.
    Raises PlatformError (the graph cannot be compiled), TritonError, OSError."""
    if deployment.runs_units:
        return units_load(deployment, server, instances)
    entry_write(repository=Path(server.repository_path), triton_name=deployment.triton_name,
                onnx_path=deployment_onnx_path(deployment),
                config=deployment_config_pbtxt(deployment, server, instances, reserved_mb),
                native_onnx="onnxruntime" in server.backends)
    return triton.model_load(server.http_url, deployment.triton_name, timeout=settings.TRITON_LOAD_TIMEOUT_S)


def replica_triton_remove(deployment: Deployment, server: TritonServer, *, alive: bool = True) -> None:
    """Unload the deployment from `server` and remove its entry; then let go of its units
    (the top model first: see units.py). A server that is gone (`alive` false) is not
    called, its holds only forgotten."""
    if alive:
        try:
            triton.model_unload(server.http_url, deployment.triton_name)
        except triton.TritonError:
            pass  # already gone with its server; the entry goes anyway
    entry_remove(repository=Path(server.repository_path), triton_name=deployment.triton_name)
    if UnitHold.objects.filter(deployment=deployment, server=server).exists():
        units_release(deployment, server, unload=alive)


def compiled_files_remove(deployment: Deployment) -> None:
    """Once a graph deployment is undeployed its fused model or compiled units serve nothing."""
    fused_remove(deployment)
    compiled_remove(deployment)
