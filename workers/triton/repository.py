"""Writes Triton model-repository entries for deployments.

An entry is `<triton_name>/config.pbtxt` and `<triton_name>/1/` holding `model.onnx`
(plus the Python runner when the server lacks the native onnxruntime backend).
Entries are built in a temporary directory and renamed into place, so Triton never sees
a half-written one."""
import py_compile
import shutil
import tempfile
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

DEFAULT_MAX_BATCH_SIZE = 64
DEFAULT_QUEUE_DELAY_US = 500
RUNNER_SOURCE = Path(__file__).with_name("runner_model.py")

KSERVE_TO_TRITON = {
    "BOOL": mc.TYPE_BOOL, "UINT8": mc.TYPE_UINT8, "UINT16": mc.TYPE_UINT16, "UINT32": mc.TYPE_UINT32,
    "UINT64": mc.TYPE_UINT64, "INT8": mc.TYPE_INT8, "INT16": mc.TYPE_INT16, "INT32": mc.TYPE_INT32,
    "INT64": mc.TYPE_INT64, "FP16": mc.TYPE_FP16, "FP32": mc.TYPE_FP32, "FP64": mc.TYPE_FP64,
    "BYTES": mc.TYPE_STRING,
}


def _tensor(tensor, spec: dict, batched: bool, reshape: bool = True) -> None:
    shape = spec["shape"][1:] if batched else spec["shape"]
    tensor.name = spec["name"]
    tensor.data_type = KSERVE_TO_TRITON[spec["datatype"]]
    if shape:
        tensor.dims.extend(shape)
    else:
        # Triton needs at least one dim; a per-item scalar is exposed as [1]. The model sees
        # it without that dim (reshape []); an ensemble, which runs no model of its own,
        # takes it as the [1] its steps expose.
        tensor.dims.append(1)
        if reshape:
            tensor.reshape.SetInParent()


def model_config(*, triton_name: str, inputs: list[dict], outputs: list[dict], has_batch_dim: bool,
                 native_onnx: bool, gpu: bool, max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
                 instances: int = 1, queue_delay_us: int = DEFAULT_QUEUE_DELAY_US,
                 preferred_batch_sizes: list[int] | None = None,
                 memory_limit_mb: int | None = None) -> mc.ModelConfig:
    """The Triton configuration of one deployment, as the protobuf message Triton parses.
    Every string in it (names come from tenants' models) is escaped by protobuf's text
    format when written, so no value can add or change a field.
    `memory_limit_mb` is the deployment's memory share, which the Python-backend runner
    enforces on its own process (runner_model.py)."""
    batched = has_batch_dim and max_batch_size > 0
    config = mc.ModelConfig(name=triton_name, backend="onnxruntime" if native_onnx else "python",
                            max_batch_size=max_batch_size if batched else 0)
    for spec in inputs:
        _tensor(config.input.add(), spec, batched)
    for spec in outputs:
        _tensor(config.output.add(), spec, batched)
    if batched:
        config.dynamic_batching.max_queue_delay_microseconds = queue_delay_us
        config.dynamic_batching.preferred_batch_size.extend(preferred_batch_sizes or [])
    group = config.instance_group.add()
    group.kind = mc.ModelInstanceGroup.KIND_GPU if gpu else mc.ModelInstanceGroup.KIND_CPU
    group.count = instances
    if native_onnx:
        config.default_model_filename = "model.onnx"
    if memory_limit_mb:
        config.parameters["memory_limit_mb"].string_value = str(int(memory_limit_mb))
    return config


def config_text(config: mc.ModelConfig) -> str:
    """config.pbtxt's text: protobuf's text format, never string formatting."""
    return text_format.MessageToString(config)


def config_pbtxt(**fields) -> str:
    return config_text(model_config(**fields))


def ensemble_config(*, triton_name: str, inputs: list[dict], outputs: list[dict], max_batch_size: int,
                    steps: list[tuple[str, dict[str, str], dict[str, str]]]) -> mc.ModelConfig:
    """A Triton ensemble over models already in the repository. `steps`: (model name, its
    input tensor -> the ensemble tensor it reads, its output tensor -> the ensemble tensor
    it writes), in any order; Triton runs each step once its inputs exist."""
    batched = max_batch_size > 0
    config = mc.ModelConfig(name=triton_name, platform="ensemble", max_batch_size=max_batch_size)
    for spec in inputs:  # graph_editor.graphs.plan refuses an ensemble a one-value-per-row input
        _tensor(config.input.add(), spec, batched, reshape=False)
    for spec in outputs:
        _tensor(config.output.add(), spec, batched, reshape=False)
    for model_name, input_map, output_map in steps:
        step = config.ensemble_scheduling.step.add(model_name=model_name, model_version=-1)
        step.input_map.update(input_map)
        step.output_map.update(output_map)
    return config


def _bytecode_write(version_dir: Path) -> None:
    """Compile the entry's Python files into `1/__pycache__` while it is staged. The Python
    backend's stub runs an isolated embedded interpreter (pybind11 2.10.0:
    PyConfig_InitIsolatedConfig), which ignores PYTHONDONTWRITEBYTECODE: importing model.py
    would write `1/__pycache__` during the load, and Triton, which dates an entry by the
    newest mtime/ctime in it, would then take the entry as modified, so loading an ensemble
    over it loads it again. Finding valid bytecode, the stub writes nothing."""
    for source in version_dir.glob("*.py"):
        py_compile.compile(str(source), doraise=True, optimize=0)  # the stub runs unoptimized


def entry_write(*, repository: Path, triton_name: str, config: str, onnx_path: Path | None = None,
                native_onnx: bool = False, files: dict[str, Path | bytes] | None = None) -> Path:
    """Write `<triton_name>/config.pbtxt` and its version directory `1/`: the ONNX file
    as model.onnx (with the Python runner beside it unless the server runs ONNX natively),
    and any other `files` (name -> a file to copy, or the bytes)."""
    repository.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{triton_name}-", dir=repository))
    try:
        version_dir = staging / "1"
        version_dir.mkdir()
        (staging / "config.pbtxt").write_text(config)
        if onnx_path is not None:
            shutil.copyfile(onnx_path, version_dir / "model.onnx")
            if not native_onnx:
                shutil.copyfile(RUNNER_SOURCE, version_dir / "model.py")
        for name, content in (files or {}).items():
            if isinstance(content, bytes):
                (version_dir / name).write_bytes(content)
            else:
                shutil.copyfile(content, version_dir / name)
        _bytecode_write(version_dir)
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
