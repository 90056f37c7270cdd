"""The Triton servers' health: each beat's check, a server that restarts, and what a
local server's loaded models take in memory (read from /proc)."""
import math
import os

from django.utils import timezone

from workers import queue
from workers.models import DeploymentState, Replica, TritonServer
from workers.services.replicas import replicas_lost
from workers.triton import client as triton


def servers_check_run() -> dict:
    """Health of every enabled server. A server that stops answering loses its replicas at
    once: the gateway stops routing to it, and its deployments are placed elsewhere."""
    result = {}
    for server in TritonServer.objects.filter(enabled=True):
        healthy = triton.server_live(server.http_url)
        fields = {"healthy": healthy}
        if healthy:
            fields["last_seen_at"] = timezone.now()
        TritonServer.objects.filter(pk=server.pk).update(**fields)
        result[server.name] = healthy
        if not healthy:
            lost = list(Replica.objects.filter(server=server).select_related("server"))
            for deployment_id in replicas_lost(lost, reason=f"Server {server.name} stopped answering"):
                queue.deployment_load(deployment_id)
    return result


def server_restarted_run(*, server_name: str) -> list[int]:
    """A Triton server answers again after a (re)start, with no model loaded (`manage.py
    triton_serve` calls this each time its server is live): it is healthy, the replicas
    recorded on it are forgotten and their deployments loaded again, here or elsewhere.
    Returns those deployments; nothing happens for a server that is not registered."""
    server = TritonServer.objects.filter(name=server_name).first()
    if server is None:
        return []
    TritonServer.objects.filter(pk=server.pk).update(healthy=True, last_seen_at=timezone.now())
    # Replicas of deployments being undeployed are left to their unload, which also removes their entries.
    lost = list(Replica.objects.filter(server=server, deployment__state__in=[DeploymentState.READY,
                                                                             DeploymentState.LOADING])
                .select_related("server"))
    moved = replicas_lost(lost, reason=f"Server {server.name} restarted")
    for deployment_id in moved:
        queue.deployment_load(deployment_id)
    return moved


def measured_memory_mb(triton_name: str) -> int | None:
    """Resident memory of a loaded model's Python-backend stubs, when the server runs on
    this host (a local server); None where it cannot be seen from here."""
    needle = f"/{triton_name}/".encode()
    total_kb, found = 0, False
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return None
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if needle not in f.read():
                    continue
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total_kb += int(line.split()[1])
                        found = True
                        break
        except (OSError, ValueError):
            continue
    return math.ceil(total_kb / 1024) if found else None
