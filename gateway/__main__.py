"""Run the gateway: `python -m gateway --host 127.0.0.1 --port 8080 --grpc-port 8081 --workers 2`."""
import argparse
import logging
import os


def main() -> None:
    parser = argparse.ArgumentParser(description="Inference gateway (KServe v2 over HTTP and gRPC)")
    parser.add_argument("--host", default=os.environ.get("GATEWAY_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GATEWAY_PORT", 8080)))
    parser.add_argument("--grpc-port", type=int, default=int(os.environ.get("GATEWAY_GRPC_PORT", 8081)),
                        help="KServe v2 gRPC port, shared by the worker processes (0: no gRPC)")
    parser.add_argument("--workers", type=int, default=int(os.environ.get("GATEWAY_WORKERS", 1)),
                        help="processes sharing the ports (SO_REUSEPORT)")
    args = parser.parse_args()
    # Settings are read from the environment when the gateway's modules are imported (gateway/config.py).
    os.environ["GATEWAY_GRPC_HOST"] = args.host
    os.environ["GATEWAY_GRPC_PORT"] = str(args.grpc_port)
    logging.basicConfig(level=os.environ.get("GATEWAY_LOG_LEVEL", "warning").upper(),
                        format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s")
    from gateway.processes import serve

    serve(args.host, args.port, args.workers)


if __name__ == "__main__":
    main()
