"""The platform's real processes on free ports, for integration tests and benchmarks.

`PlatformStack` starts Triton, a Celery worker, the metering consumer, the gateway and the
portal against the database and Redis of the current Django settings (tests/conftest.py
runs it as the suite's `platform_stack` fixture); `scratch_stack` gives a benchmark one
on a database, Redis database and directory of its own. Every wait here raises when it
times out, with what it saw last: a stuck stack fails where it got stuck."""
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import redis
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
LOG_TAIL_CHARS = 3000

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log_tail(log: Path | None, chars: int = LOG_TAIL_CHARS) -> str:
    """The end of a process's log, or nothing when there is none."""
    if log is None or not log.exists():
        return ""
    return log.read_text(errors="replace")[-chars:]


def wait_http(url: str, timeout: float, proc: subprocess.Popen | None = None, log: Path | None = None) -> None:
    """Return once `url` answers 200. Raises RuntimeError when `proc` exits first and
    TimeoutError after `timeout` seconds, each with the last answer seen and `log`'s tail."""
    deadline = time.monotonic() + timeout
    seen = "no answer yet"
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{url}: process exited with {proc.returncode}; last answer: {seen}\n{log_tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
                seen = f"HTTP {resp.status}"
        except urllib.error.HTTPError as exc:
            seen = f"HTTP {exc.code}"
        except Exception as exc:  # refused, reset, timed out: not up yet
            seen = f"{type(exc).__name__}: {exc}"
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready after {timeout:g}s; last answer: {seen}\n{log_tail(log)}")


def wait(probe: Callable[[], T], timeout: float, what: str, *, until: Callable[[T], bool] = bool,
         interval: float = 0.05) -> T:
    """Call `probe` until `until` holds for what it returns, and return that. After
    `timeout` seconds raises TimeoutError naming `what` and the last value seen."""
    deadline = time.monotonic() + timeout
    while not until(seen := probe()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}; last seen: {seen!r}")
        time.sleep(interval)
    return seen


def database_url() -> str:
    db = connection.settings_dict
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{host}:{port}/{db['NAME']}"


HOLD_TIMEOUT_S = 5


class PlatformStack:
    """The platform's processes, each on free ports, each logging to `workdir`/<name>.log."""

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
        log = self.workdir / f"{name}.log"
        wait_http(f"{url}/v2/health/ready", 60, proc, log)
        # Registered only once its supervisor has seen it live: `triton_serve` then treats
        # a registered server as restarted and reloads the deployments placed on it, which
        # would reload a deployment the caller has just placed there.
        wait(lambda: f"triton {name} is live" in log.read_text(errors="replace"), 30,
             f"{name}'s supervisor to see it live")
        TritonServer.objects.update_or_create(name=name, defaults={
            "http_url": url, "grpc_url": f"127.0.0.1:{grpc_port}", "metrics_url": f"http://127.0.0.1:{metrics_port}/metrics",
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
                "metrics_url": f"http://127.0.0.1:{self.triton_metrics_port}/metrics",
                "repository_path": str(self.triton_repository),
                "backends": ["python"],
                "enabled": True,
                "healthy": True,
                "memory_mb": 8192,
            },
        )
        # Servers a test started and registered are gone with its database.

    def wait_quiet(self, timeout: float = 30.0) -> None:
        """Wait until usage events are ingested and no deployment is in transition. Raises
        TimeoutError with what was still busy and the tails of the logs that would say why."""
        deadline = time.monotonic() + timeout
        while busy := self.busy():
            if time.monotonic() > deadline:
                raise TimeoutError(f"the stack is not quiet after {timeout:g}s: {busy}" + "".join(
                    f"\n--- {name}.log\n{log_tail(self.workdir / f'{name}.log', LOG_TAIL_CHARS // 2)}"
                    for name in ("metering", "worker")))
            time.sleep(0.1)
        time.sleep(0.2)

    def busy(self) -> dict:
        """What keeps the stack from being quiet, by name (nothing when it is quiet)."""
        from billing.metering import GROUP
        from gateway.contract.keys import USAGE_STREAM
        from tenants.directory import redis_client
        from workers.models import Deployment, DeploymentState

        r = redis_client()
        try:
            pending = r.xpending(USAGE_STREAM, GROUP)["pending"]
        except redis.ResponseError:  # no consumer group yet: nothing read, nothing pending
            pending = 0
        transitional = [DeploymentState.PENDING, DeploymentState.LOADING, DeploymentState.UNLOADING]
        busy = {
            "usage_stream_length": r.xlen(USAGE_STREAM), "usage_pending": pending, "control_queue": r.llen("control"),
            "deployments_in_transition": dict(
                Deployment.unscoped.filter(state__in=transitional).values_list("pk", "state")),
        }
        return {name: value for name, value in busy.items() if value}

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
        # Not Path.glob: it stats each entry, and a process that exits meanwhile raises.
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            stat = Path("/proc", entry, "stat")
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


def scratch_stack(name: str, *, redis_db: int, env: dict | None = None) -> PlatformStack:
    """The real stack on a scratch database, Redis database and directory of the
    benchmark's own (so that it can run beside the test suite, a running platform or the
    other benchmarks; test runs take Redis databases 9-15), not started yet. `env` goes
    to this process and the stack's processes."""
    os.environ.setdefault("DATABASE_URL", f"postgres://postgres@127.0.0.1:5432/bench_{name}")
    os.environ.setdefault("TEST_REDIS_URL", f"redis://127.0.0.1:6379/{redis_db}")
    os.environ.setdefault("TEST_VAR_DIR", str(Path(tempfile.gettempdir()) / f"inference-platform-bench-{name}"))
    os.environ["DJANGO_SETTINGS_MODULE"] = "portal.settings_test"
    os.environ.update(env or {})
    import django

    django.setup()
    from django.test.utils import setup_test_environment

    from tenants.directory import redis_client

    setup_test_environment()
    connection.creation.create_test_db(verbosity=0, autoclobber=True)
    redis_client().flushdb()  # no routes or activity of an earlier run with the same ids
    return PlatformStack(workdir=Path(tempfile.mkdtemp(prefix=f"bench-{name}-")))


def scratch_stop(stack: PlatformStack) -> None:
    """Stop a scratch_stack and drop its database."""
    stack.stop()
    connection.creation.destroy_test_db(connection.settings_dict["NAME"], verbosity=0)
