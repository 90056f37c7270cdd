import os
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

from workers.models import TritonServer
from workers.triton.local import backend_dir_prepare, server_command, server_environment


class Command(BaseCommand):
    help = "Register a local Triton server and run it in the foreground (exec)."

    def add_arguments(self, parser):
        parser.add_argument("--name", default=os.environ.get("TRITON_NAME", "local"))
        parser.add_argument("--host", default="127.0.0.1", help="Address the platform uses to reach it")
        parser.add_argument("--http-port", type=int, default=int(os.environ.get("TRITON_HTTP_PORT", 8100)))
        parser.add_argument("--grpc-port", type=int, default=int(os.environ.get("TRITON_GRPC_PORT", 8101)))
        parser.add_argument("--metrics-port", type=int, default=int(os.environ.get("TRITON_METRICS_PORT", 8102)))
        parser.add_argument("--bind", default="127.0.0.1", help="Address Triton listens on")
        parser.add_argument("--no-register", action="store_true", help="Do not write the server record")

    def handle(self, *args, name, bind, host, http_port, grpc_port, metrics_port, no_register, **options):
        root = Path(settings.TRITON_VAR_DIR)
        repository = root / name / "models"
        repository.mkdir(parents=True, exist_ok=True)
        backends = backend_dir_prepare(root / "backends")
        if not no_register:
            TritonServer.objects.update_or_create(
                name=name,
                defaults={
                    "http_url": f"http://{host}:{http_port}",
                    "grpc_url": f"{host}:{grpc_port}",
                    "repository_path": str(repository),
                    "backends": ["python"],
                    "enabled": True,
                },
            )
        command = server_command(repository=repository, backends=backends, bind=bind, http_port=http_port,
                                 grpc_port=grpc_port, metrics_port=metrics_port)
        self.stdout.write(f"triton {name}: http {http_port}, grpc {grpc_port}, repository {repository}")
        self.stdout.flush()
        os.execve(command[0], command, server_environment())
