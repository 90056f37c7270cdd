"""The part of the gateway's directory that deployments own: one route per routable
deployment (gw:route:<tenant_id>:<name>), with the signature its requests are checked
against. Written after the transaction that changed the deployment commits."""
from gateway.contract.keys import route_entry_name, wake_marker_name
from gateway.contract.scripts import lua_source
from gateway.contract.signature import signature_text
from tenants.directory import redis_client


def deployment_entry(deployment) -> dict:
    servers = [replica.server for replica in deployment.replicas_ready() if replica.server.healthy]
    return {
        # The version: the row's last change (microseconds), first so that route_put.lua finds it.
        "v": int(deployment.updated_at.timestamp() * 1_000_000) if deployment.updated_at else 0,
        "deployment_id": deployment.pk,
        # Usage events carry it (ver); a graph deployment has none: empty, stored as null.
        "model_version_id": deployment.model_version_id or "",
        "triton_model": deployment.triton_name,
        "state": deployment.state,
        "http_url": " ".join(server.http_url for server in servers),
        "grpc_url": " ".join(server.grpc_url for server in servers if server.grpc_url),
        "error": deployment.error[:500],
        "sig": deployment_signature(deployment),
        # Which of the tenant's prices its requests cost (gw:bill:<tenant_id>: req_<hw>, ms_<hw>).
        "hw": deployment.hardware,
    }


def deployment_signature(deployment) -> str:
    return signature_text(**deployment.target_signature(), max_batch_size=deployment.max_batch_size)


def directory_put_deployment(deployment) -> None:
    name = route_entry_name(deployment.tenant_id, deployment.name)
    if not deployment.is_routable:
        redis_client().delete(name)
        return
    entry = deployment_entry(deployment)
    args = [item for pair in entry.items() for item in pair]
    # Gone cold: the next call must wake it, whoever woke it last time.
    wake = wake_marker_name(deployment.pk) if deployment.state == "cold" else ""
    redis_client().eval(lua_source("route_put"), 1, name, wake, *args)
