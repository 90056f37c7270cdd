"""The ONNX file a deployment's Triton entry holds: its model version's upload, or, for a
graph, the graph fused into one ONNX model (graph_editor.graphs.fuse), the cheapest
executor for a graph whose steps are all ONNX: one session per instance, no hop between
steps.

A graph deployment's fused model is built the first time it loads and kept beside the
uploads (Deployment.fused_path): every later load, a wake from zero included, copies it as
a model version's file is copied, so a cold start does not pay for fusing again. It is
written to a temporary name and renamed, so a reader never sees half of it."""
import os
import tempfile
from pathlib import Path

from graph_editor.graphs.fuse import graph_fuse
from workers.models import Deployment


def deployment_onnx_path(deployment: Deployment) -> Path:
    """The file to copy into the deployment's repository entry as model.onnx. Raises
    PlatformError (invalid_graph, unfusable) for a graph that cannot be fused."""
    if not deployment.is_graph:
        return deployment.model_version.absolute_path
    path = deployment.fused_path
    if not path.exists():
        fused = graph_fuse(tenant=deployment.tenant, spec=deployment.graph_version.spec)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, staging = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(fused.model.SerializeToString())
            os.replace(staging, path)
        except BaseException:
            Path(staging).unlink(missing_ok=True)
            raise
    return path


def fused_remove(deployment: Deployment) -> None:
    """Once a graph deployment is undeployed its fused model serves nothing."""
    if deployment.is_graph:
        deployment.fused_path.unlink(missing_ok=True)
