import os
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import connections

from workers.models import TritonServer
from workers.services import server_restarted_run
from workers.triton.local import (
    ServerSupervisor,
    backend_dir_prepare,
    server_command,
    server_environment,
)


class Command(BaseCommand):
    help = ("Register a local Triton server and run it as a child process, started again whenever it dies; "
            "each time it answers, the deployments it held are loaded again.")

    def add_arguments(self, parser):
        parser.add_argument("--name", default=os.environ.get("TRITON_NAME", "local"))
        parser.add_argument("--host", default="127.0.0.1", help="Address the platform uses to reach it")
        parser.add_argument("--http-port", type=int, default=int(os.environ.get("TRITON_HTTP_PORT", 8100)))
        parser.add_argument("--grpc-port", type=int, default=int(os.environ.get("TRITON_GRPC_PORT", 8101)))
        parser.add_argument("--metrics-port", type=int, default=int(os.environ.get("TRITON_METRICS_PORT", 8102)))
        parser.add_argument("--bind", default="127.0.0.1", help="Address Triton listens on")
        parser.add_argument("--no-register", action="store_true", help="Do not write the server record")
        parser.add_argument("--memory-mb", type=int, default=int(os.environ.get("TRITON_MEMORY_MB", 0)) or None,
                            help="Memory it offers to models (default: half of this machine's)")
        parser.add_argument("--gpus", type=int, default=None,
                            help="GPUs it has (default: those nvidia-smi lists, none without it)")

    def handle(self, *args, name, bind, host, http_port, grpc_port, metrics_port, no_register, memory_mb, gpus,
               **options):
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
                    "metrics_url": f"http://{host}:{metrics_port}/metrics",
                    "repository_path": str(repository),
                    "backends": ["python"],
                    "enabled": True,
                    "memory_mb": memory_mb or machine_memory_mb() // 2,
                    "gpus": gpus if gpus is not None else gpus_visible(),
                },
            )
        command = server_command(repository=repository, backends=backends, bind=bind, http_port=http_port,
                                 grpc_port=grpc_port, metrics_port=metrics_port)
        self.say(f"triton {name}: http {http_port}, grpc {grpc_port}, repository {repository}")
        connections.close_all()  # idle while Triton runs; each start opens its own
        live_host = "127.0.0.1" if bind in ("0.0.0.0", "::", "") else (f"[{bind}]" if ":" in bind else bind)
        supervisor = ServerSupervisor(command, server_environment(), live_url=f"http://{live_host}:{http_port}",
                                      on_live=lambda: self.server_started(name), say=self.say)
        code = supervisor.run()
        if code:
            raise SystemExit(code)

    def server_started(self, name: str) -> None:
        """A new Triton has no model loaded: what the platform recorded on it is loaded again."""
        try:
            moved = server_restarted_run(server_name=name)
        finally:
            connections.close_all()
        self.say(f"triton {name} is live" + (f"; loading deployments {moved} again" if moved else ""))

    def say(self, message: str) -> None:
        self.stdout.write(message)
        self.stdout.flush()


def machine_memory_mb() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20


def gpus_visible() -> int:
    import shutil
    import subprocess

    if not shutil.which("nvidia-smi"):
        return 0
    try:
        out = subprocess.run(["nvidia-smi", "--list-gpus"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.splitlines() if line.startswith("GPU "))
