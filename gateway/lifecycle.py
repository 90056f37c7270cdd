"""What every gateway process starts before serving and stops after, in order: the core
(its Redis connection, lease renewal, the broker for cold starts), then the KServe v2 gRPC
service when GATEWAY_GRPC_PORT is set. The HTTP server itself is its caller's
(gateway/processes.py, or any ASGI server through gateway/asgi.py)."""
from grpc import aio

from gateway import config, http_api
from gateway.core import core
from gateway.grpc_server import grpc_start


async def startup() -> aio.Server | None:
    """Start the core, and gRPC beside it when configured: the gRPC server, or None."""
    await core.startup()
    if config.GRPC_PORT:
        return await grpc_start(core, config.GRPC_HOST, config.GRPC_PORT)
    return None


async def shutdown(grpc_server: aio.Server | None) -> None:
    if grpc_server is not None:
        await grpc_server.stop(2)
    http_api.close()
    await core.shutdown()
