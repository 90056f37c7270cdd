"""Run the gateway: `python -m gateway --host 127.0.0.1 --port 8080 --grpc-port 8081 --workers 2`."""
import argparse
import os

import uvicorn


def main() -> None:
    parser = argparse.ArgumentParser(description="Inference gateway (KServe v2 over HTTP and gRPC)")
    parser.add_argument("--host", default=os.environ.get("GATEWAY_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GATEWAY_PORT", 8080)))
    parser.add_argument("--grpc-port", type=int, default=int(os.environ.get("GATEWAY_GRPC_PORT", 8081)),
                        help="KServe v2 gRPC port, shared by the worker processes (0: no gRPC)")
    parser.add_argument("--workers", type=int, default=int(os.environ.get("GATEWAY_WORKERS", 1)))
    args = parser.parse_args()
    # The worker processes read their settings from the environment (gateway/config.py).
    os.environ["GATEWAY_GRPC_HOST"] = args.host
    os.environ["GATEWAY_GRPC_PORT"] = str(args.grpc_port)
    uvicorn.run(
        "gateway.app:app", host=args.host, port=args.port, workers=args.workers, loop="uvloop", http="httptools",
        lifespan="on", access_log=False, log_level=os.environ.get("GATEWAY_LOG_LEVEL", "warning"),
        timeout_keep_alive=30, backlog=2048,
        # Nothing here reads the client address or needs a Server header: skip the work.
        proxy_headers=False, server_header=False,
    )


if __name__ == "__main__":
    main()
