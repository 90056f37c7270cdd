"""Running the Triton Inference Server that ships inside the nvidia-pytriton wheel.

That build has only the Python backend. It needs the wheel's bundled libraries on
LD_LIBRARY_PATH and a backend directory holding the backend library, its utils module
and the stub built for the running Python.

`ServerSupervisor` runs it as a child process and starts it again whenever it dies."""
import ctypes
import functools
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable
from pathlib import Path

from workers.triton.client import server_live

PYTHON_TAG = f"{sys.version_info.major}.{sys.version_info.minor}"
RESTART_DELAY_S = 0.5
RESTART_DELAY_MAX_S = 30.0
STABLE_AFTER_S = 60.0  # a server that ran this long restarts after RESTART_DELAY_S again
STOP_TIMEOUT_S = 15  # after a stop signal, SIGKILL if it has not exited (Triton's own limit is 5 s)
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def pytriton_root() -> Path:
    import pytriton

    return Path(pytriton.__file__).parent


def server_binary() -> Path:
    return pytriton_root() / "tritonserver" / "bin" / "tritonserver"


def library_dir() -> Path:
    return Path(sysconfig.get_paths()["purelib"]) / "nvidia_pytriton.libs"


def backend_dir_prepare(target: Path) -> Path:
    """Lay out `<target>/python/` as Triton expects; idempotent."""
    source = pytriton_root() / "tritonserver"
    python_dir = target / "python"
    python_dir.mkdir(parents=True, exist_ok=True)
    files = {
        "libtriton_python.so": source / "backends" / "python" / "libtriton_python.so",
        "triton_python_backend_utils.py": source / "backends" / "python" / "triton_python_backend_utils.py",
        "triton_python_backend_stub": source / "python_backend_stubs" / PYTHON_TAG / "triton_python_backend_stub",
    }
    for name, src in files.items():
        if not src.exists():
            raise FileNotFoundError(f"{src} is missing: is nvidia-pytriton installed for Python {PYTHON_TAG}?")
        dst = python_dir / name
        if not dst.exists() or dst.stat().st_size != src.stat().st_size:
            shutil.copy2(src, dst)
            dst.chmod(0o755)
    return target


def server_command(*, repository: Path, backends: Path, bind: str, http_port: int, grpc_port: int,
                   metrics_port: int) -> list[str]:
    return [
        str(server_binary()),
        f"--model-repository={repository}",
        f"--backend-directory={backends}",
        "--model-control-mode=explicit",
        # The platform writes complete configurations. Without this flag the Python
        # backend starts a stub process per load only to auto-complete the config: a
        # load of the demo model took 1.45 s with it, 0.25 s without.
        "--disable-auto-complete-config",
        f"--http-address={bind}",
        f"--http-port={http_port}",
        f"--grpc-address={bind}",
        f"--grpc-port={grpc_port}",
        f"--metrics-port={metrics_port}",
        "--allow-metrics=true",
        # Per-model latency percentiles (nv_inference_request_summary_us), which the
        # graph editor shows for each node.
        "--metrics-config=summary_latencies=true",
        "--exit-timeout-secs=5",
        "--log-verbose=0",
    ]


def server_environment() -> dict:
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(library_dir()), env.get("LD_LIBRARY_PATH", "")]))
    # The stub imports packages (onnxruntime, numpy) from the Python found on PATH.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


class ServerSupervisor:
    """Runs tritonserver as a child until SIGTERM or SIGINT, which it forwards; `run`
    returns the server's exit status then. A server that dies (a crash such as
    std::bad_alloc, the OOM killer) is started again RESTART_DELAY_S later, the delay
    doubling up to RESTART_DELAY_MAX_S while it keeps dying within STABLE_AFTER_S of its
    start. A new server has no model loaded: `on_live` runs each time one answers
    /v2/health/live, the first included.

    The child gets PR_SET_PDEATHSIG (SIGKILL): whatever ends this process ends Triton too,
    and its Python-backend stubs, which watch their parent, follow. The caller starts no
    thread (the child is set up by preexec_fn)."""

    def __init__(self, command: list[str], env: dict, *, live_url: str, on_live: Callable[[], None],
                 say: Callable[[str], None]):
        self.command, self.env, self.live_url, self.on_live, self.say = command, env, live_url, on_live, say
        self.child: subprocess.Popen | None = None
        self.stop_signal = 0

    def run(self) -> int:
        handlers = {signum: signal.signal(signum, self._stop) for signum in (signal.SIGTERM, signal.SIGINT)}
        handlers[signal.SIGALRM] = signal.signal(signal.SIGALRM, self._kill)
        delay = RESTART_DELAY_S
        try:
            while True:
                started = time.monotonic()
                self.child = subprocess.Popen(self.command, env=self.env,
                                              preexec_fn=functools.partial(die_with_parent, os.getpid()))
                if self.stop_signal:  # it came while the child was being started
                    self._signal(self.stop_signal)
                elif self._wait_live():
                    self._live()
                code = self.child.wait()
                if self.stop_signal:
                    return code if code >= 0 else 128 - code
                ran = time.monotonic() - started
                if ran >= STABLE_AFTER_S:
                    delay = RESTART_DELAY_S
                self.say(f"tritonserver (pid {self.child.pid}) {_exit_description(code)} after {ran:.1f} s; "
                         f"starting it again in {delay:g} s")
                if not self._sleep(delay):
                    return 0
                delay = min(delay * 2, RESTART_DELAY_MAX_S)
        finally:
            signal.alarm(0)
            for signum, handler in handlers.items():
                signal.signal(signum, handler)

    def _wait_live(self) -> bool:
        """Until the new server answers; False when it died, or a stop came, first."""
        while self.child.poll() is None and not self.stop_signal:
            if server_live(self.live_url, timeout=1.0):
                return True
            time.sleep(0.1)
        return False

    def _live(self) -> None:
        try:
            self.on_live()
        except Exception as exc:  # the server keeps running; the health check and reconcile catch up
            self.say(f"tritonserver (pid {self.child.pid}) is live, but what follows its start failed: {exc!r}")

    def _sleep(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while not self.stop_signal and time.monotonic() < deadline:
            time.sleep(min(0.1, seconds))
        return not self.stop_signal

    def _signal(self, signum: int) -> None:
        # Not Popen.send_signal: it polls, and this runs in a signal handler that may have
        # interrupted Popen.wait.
        if self.child is not None and self.child.returncode is None:
            try:
                os.kill(self.child.pid, signum)
            except ProcessLookupError:
                pass

    def _stop(self, signum, _frame) -> None:
        if not self.stop_signal:
            signal.alarm(STOP_TIMEOUT_S)
        self.stop_signal = signum
        self._signal(signum)

    def _kill(self, _signum, _frame) -> None:
        self._signal(signal.SIGKILL)


def die_with_parent(parent: int) -> None:
    """In the child, before exec: SIGKILL when the parent exits (kept across execve)."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent:  # it exited before prctl took effect
        os._exit(1)


def _exit_description(code: int) -> str:
    return f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with status {code}"
