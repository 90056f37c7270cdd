"""Writes Triton model-repository entries for deployments.

An entry is `<triton_name>/config.pbtxt` and `<triton_name>/1/` holding `model.onnx`
(plus the Python runner when the server lacks the native onnxruntime backend).
Entries are built in a temporary directory and renamed into place, so Triton never sees
a half-written one."""
import shutil
import tempfile
from pathlib import Path

DEFAULT_MAX_BATCH_SIZE = 64
DEFAULT_QUEUE_DELAY_US = 500
RUNNER_SOURCE = Path(__file__).with_name("runner_model.py")

KSERVE_TO_TRITON = {
    "BOOL": "TYPE_BOOL", "UINT8": "TYPE_UINT8", "UINT16": "TYPE_UINT16", "UINT32": "TYPE_UINT32",
    "UINT64": "TYPE_UINT64", "INT8": "TYPE_INT8", "INT16": "TYPE_INT16", "INT32": "TYPE_INT32",
    "INT64": "TYPE_INT64", "FP16": "TYPE_FP16", "FP32": "TYPE_FP32", "FP64": "TYPE_FP64", "BYTES": "TYPE_STRING",
}


def _tensor_block(spec: dict, batched: bool) -> str:
    shape = spec["shape"][1:] if batched else spec["shape"]
    fields = [f'name: "{spec["name"]}"', f"data_type: {KSERVE_TO_TRITON[spec['datatype']]}"]
    if shape:
        fields.append(f"dims: [ {', '.join(str(d) for d in shape)} ]")
    else:
        # Triton needs at least one dim; a per-item scalar is exposed as [1].
        fields.append("dims: [ 1 ]")
        fields.append("reshape: { shape: [ ] }")
    return "{ " + " ".join(fields) + " }"


def config_pbtxt(*, triton_name: str, inputs: list[dict], outputs: list[dict], has_batch_dim: bool,
                 native_onnx: bool, gpu: bool, max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
                 instances: int = 1, queue_delay_us: int = DEFAULT_QUEUE_DELAY_US,
                 preferred_batch_sizes: list[int] | None = None) -> str:
    batched = has_batch_dim and max_batch_size > 0
    lines = [f'name: "{triton_name}"']
    lines.append('backend: "onnxruntime"' if native_onnx else 'backend: "python"')
    lines.append(f"max_batch_size: {max_batch_size if batched else 0}")
    lines.append("input [\n  " + ",\n  ".join(_tensor_block(s, batched) for s in inputs) + "\n]")
    lines.append("output [\n  " + ",\n  ".join(_tensor_block(s, batched) for s in outputs) + "\n]")
    if batched:
        preferred = ""
        if preferred_batch_sizes:
            preferred = f"preferred_batch_size: [ {', '.join(str(s) for s in preferred_batch_sizes)} ] "
        lines.append(f"dynamic_batching {{ {preferred}max_queue_delay_microseconds: {queue_delay_us} }}")
    kind = "KIND_GPU" if gpu else "KIND_CPU"
    lines.append(f"instance_group [ {{ kind: {kind} count: {instances} }} ]")
    if native_onnx:
        lines.append('default_model_filename: "model.onnx"')
    return "\n".join(lines) + "\n"


def entry_write(*, repository: Path, triton_name: str, onnx_path: Path, config: str, native_onnx: bool) -> Path:
    repository.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{triton_name}-", dir=repository))
    try:
        version_dir = staging / "1"
        version_dir.mkdir()
        (staging / "config.pbtxt").write_text(config)
        shutil.copyfile(onnx_path, version_dir / "model.onnx")
        if not native_onnx:
            shutil.copyfile(RUNNER_SOURCE, version_dir / "model.py")
        staging.chmod(0o755)
        target = repository / triton_name
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def entry_remove(*, repository: Path, triton_name: str) -> None:
    shutil.rmtree(repository / triton_name, ignore_errors=True)
