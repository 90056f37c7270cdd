"""Running the Triton Inference Server that ships inside the nvidia-pytriton wheel.

That build has only the Python backend. It needs the wheel's bundled libraries on
LD_LIBRARY_PATH and a backend directory holding the backend library, its utils module
and the stub built for the running Python."""
import os
import shutil
import sys
import sysconfig
from pathlib import Path

PYTHON_TAG = f"{sys.version_info.major}.{sys.version_info.minor}"


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


def server_command(*, repository: Path, backends: Path, bind: str, http_port: int, grpc_port: int, metrics_port: int) -> list[str]:
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
        "--exit-timeout-secs=5",
        "--log-verbose=0",
    ]


def server_environment() -> dict:
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(library_dir()), env.get("LD_LIBRARY_PATH", "")]))
    # The stub imports packages (onnxruntime, numpy) from the Python found on PATH.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env
