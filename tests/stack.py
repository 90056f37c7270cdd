"""Starts and stops the platform's real processes for integration tests."""
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float, proc: subprocess.Popen | None = None, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{url}: process exited with {proc.returncode}\n" + (log.read_text()[-3000:] if log else ""))
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except Exception:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready after {timeout}s\n" + (log.read_text()[-3000:] if log else ""))


def database_url() -> str:
    db = connection.settings_dict
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{host}:{port}/{db['NAME']}"


HOLD_TIMEOUT_S = 5


class PlatformStack:
    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.procs: dict[str, subprocess.Popen] = {}
        self.triton_http_port = free_port()
        self.triton_grpc_port = free_port()
        self.triton_metrics_port = free_port()
        self.gateway_port = free_port()
        self.gateway_grpc_port = free_port()
        self.portal_port = free_port()
        self.triton_name = f"test-{os.getpid()}"
        self.triton_repository = Path(settings.TRITON_VAR_DIR) / self.triton_name / "models"

    @property
    def triton_url(self) -> str:
        return f"http://127.0.0.1:{self.triton_http_port}"

    @property
    def portal_url(self) -> str:
        return f"http://127.0.0.1:{self.portal_port}"

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    @property
    def env(self) -> dict:
        env = dict(os.environ)
        env.update({
            "DATABASE_URL": database_url(),
            "REDIS_URL": settings.REDIS_URL,
            "CELERY_BROKER_URL": settings.REDIS_URL,
            "MODEL_STORAGE_DIR": str(settings.MODEL_STORAGE_DIR),
            "TRITON_VAR_DIR": str(settings.TRITON_VAR_DIR),
            "DJANGO_SETTINGS_MODULE": "portal.settings",
            "PYTHONUNBUFFERED": "1",
            "GATEWAY_URL": self.gateway_url,
            "PORTAL_URL": self.portal_url,
        })
        return env

    def _spawn(self, name: str, args: list[str], env: dict | None = None) -> subprocess.Popen:
        log = self.workdir / f"{name}.log"
        proc = subprocess.Popen(
            args, cwd=ROOT, env={**self.env, **(env or {})}, stdout=log.open("wb"), stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self) -> None:
        triton = self._spawn("triton", [
            PYTHON, "manage.py", "triton_serve", "--no-register", "--name", self.triton_name,
            "--http-port", str(self.triton_http_port), "--grpc-port", str(self.triton_grpc_port),
            "--metrics-port", str(self.triton_metrics_port),
        ])
        self._spawn("worker", [
            PYTHON, "-m", "celery", "-A", "workers.celery", "worker", "-Q", "control", "--pool", "threads",
            "--concurrency", "4", "--loglevel", "INFO", "--without-gossip", "--without-mingle",
            "--hostname", f"test-worker-{os.getpid()}@%h",
        ])
        self._spawn("metering", [PYTHON, "manage.py", "metering_consume"])
        # Calls to a deployment that is not loaded are held this long (tests of the timeout
        # wait it out), long enough for a cold start on a loaded machine.
        gateway = self._spawn("gateway", [
            PYTHON, "-m", "gateway", "--host", "127.0.0.1", "--port", str(self.gateway_port),
            "--grpc-port", str(self.gateway_grpc_port), "--workers", "1",
        ], env={"GATEWAY_COLD_START_TIMEOUT_S": str(HOLD_TIMEOUT_S)})
        web = self._spawn("web", [
            PYTHON, "-m", "uvicorn", "portal.asgi:application", "--host", "127.0.0.1", "--port", str(self.portal_port),
            "--no-access-log",
        ])
        wait_http(f"{self.triton_url}/v2/health/ready", 60, triton, self.workdir / "triton.log")
        wait_http(f"{self.portal_url}/login/", 60, web, self.workdir / "web.log")
        wait_http(f"{self.gateway_url}/v2/health/live", 30, gateway, self.workdir / "gateway.log")

    def gateway_start(self, name: str, *, workers: int = 1, grpc: bool = False,
                      env: dict | None = None) -> tuple[subprocess.Popen, int]:
        """Another gateway process (or group of them) on a port of its own, ready to serve."""
        port = free_port()
        args = [PYTHON, "-m", "gateway", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
                "--grpc-port", str(free_port() if grpc else 0)]
        proc = self._spawn(name, args, env)
        wait_http(f"http://127.0.0.1:{port}/v2/health/live", 30, proc, self.workdir / f"{name}.log")
        return proc, port

    def metering_restart(self, *, claim_idle_ms: int) -> subprocess.Popen:
        """A new metering consumer in place of the current one (which may have been killed)."""
        old = self.procs.get("metering")
        if old is not None and old.poll() is None:
            os.killpg(old.pid, signal.SIGTERM)
            old.wait(timeout=15)
        return self._spawn("metering", [PYTHON, "manage.py", "metering_consume", "--claim-idle-ms",
                                        str(claim_idle_ms)])

    def triton_start(self, name: str, *, memory_mb: int = 8192) -> tuple[subprocess.Popen, str]:
        """Another Triton server, registered with `memory_mb` of capacity; returns its process and URL."""
        from workers.models import TritonServer

        http_port, grpc_port, metrics_port = free_port(), free_port(), free_port()
        proc = self._spawn(name, [
            PYTHON, "manage.py", "triton_serve", "--no-register", "--name", name, "--http-port", str(http_port),
            "--grpc-port", str(grpc_port), "--metrics-port", str(metrics_port),
        ])
        url = f"http://127.0.0.1:{http_port}"
        wait_http(f"{url}/v2/health/ready", 60, proc, self.workdir / f"{name}.log")
        TritonServer.objects.update_or_create(name=name, defaults={
            "http_url": url, "grpc_url": f"127.0.0.1:{grpc_port}",
            "repository_path": str(Path(settings.TRITON_VAR_DIR) / name / "models"), "backends": ["python"],
            "enabled": True, "healthy": True, "memory_mb": memory_mb,
        })
        return proc, url

    def kill(self, name: str) -> None:
        """Kill a process of the stack at once (SIGKILL), as a crash would."""
        proc = self.procs[name]
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def register_servers(self) -> None:
        from workers.models import TritonServer

        TritonServer.objects.update_or_create(
            name=self.triton_name,
            defaults={
                "http_url": self.triton_url,
                "grpc_url": f"127.0.0.1:{self.triton_grpc_port}",
                "repository_path": str(self.triton_repository),
                "backends": ["python"],
                "enabled": True,
                "healthy": True,
                "memory_mb": 8192,
            },
        )
        # Servers a test started and registered are gone with its database.

    def wait_quiet(self, timeout: float = 30.0) -> None:
        """Wait until usage events are ingested and no deployment is in transition."""
        from billing.metering import GROUP
        from gateway.contract.keys import USAGE_STREAM
        from tenants.directory import redis_client
        from workers.models import Deployment, DeploymentState

        transitional = [DeploymentState.PENDING, DeploymentState.LOADING, DeploymentState.UNLOADING]
        deadline = time.monotonic() + timeout
        r = redis_client()
        while time.monotonic() < deadline:
            try:
                pending = r.xpending(USAGE_STREAM, GROUP)["pending"]
            except Exception:
                pending = 0
            busy = r.xlen(USAGE_STREAM) or pending or r.llen("control")
            if not busy and not Deployment.unscoped.filter(state__in=transitional).exists():
                time.sleep(0.2)
                return
            time.sleep(0.1)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def beat_start(self, env: dict) -> subprocess.Popen:
        """Celery beat with the stack's environment and `env` on top (the schedule reads its
        intervals, e.g. AUTOSCALE_INTERVAL_S, at import); its schedule file lives in the workdir."""
        return self._spawn("beat", [
            PYTHON, "-m", "celery", "-A", "workers.celery", "beat", "--loglevel", "WARNING",
            "--schedule", str(self.workdir / "celerybeat-schedule"),
        ], env)

    @staticmethod
    def child_pids(pid: int, executable: str = "") -> list[int]:
        """The live children of `pid` (whose executable is named `executable`, when given)."""
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                text = stat.read_text()
            except OSError:
                continue
            name, fields = text[text.index("(") + 1:text.rindex(")")], text[text.rindex(")") + 2:].split()
            if int(fields[1]) == pid and fields[0] != "Z" and (not executable or name == executable[:15]):
                children.append(int(stat.parent.name))
        return sorted(children)

    def supervisor_start(self) -> subprocess.Popen:
        """`make run`'s supervisor (scripts/supervise.py, the real Procfile) on this stack's
        ports, database and Redis, its var directory in the workdir; returns once it serves.
        Its Triton registers itself as `triton_name`."""
        var = self.workdir / "var"
        env = {**self.env, "PLATFORM_VAR_DIR": str(var), "PORTAL_PORT": str(self.portal_port),
               "GATEWAY_PORT": str(self.gateway_port), "GATEWAY_GRPC_PORT": str(self.gateway_grpc_port),
               "TRITON_HTTP_PORT": str(self.triton_http_port), "TRITON_GRPC_PORT": str(self.triton_grpc_port),
               "TRITON_METRICS_PORT": str(self.triton_metrics_port), "TRITON_NAME": self.triton_name,
               "TRITON_MEMORY_MB": "8192", "TRITON_URL": self.triton_url}
        log = self.workdir / "supervisor.log"
        # Appended to: supervisord writes the processes' lines through a second file description.
        proc = subprocess.Popen([PYTHON, "scripts/supervise.py"], cwd=ROOT, env=env, stdout=log.open("ab"),
                                stderr=subprocess.STDOUT, start_new_session=True)
        self.procs["supervisor"] = proc
        wait_http(f"{self.triton_url}/v2/health/live", 90, proc, log)
        wait_http(f"{self.portal_url}/login/", 60, proc, log)
        wait_http(f"{self.gateway_url}/v2/health/live", 30, proc, log)
        return proc
