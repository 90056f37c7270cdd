"""Triton Python-backend runner for one ONNX model, executed by onnxruntime.

Generated deployments copy this file as `<model>/1/model.py` next to `model.onnx`.
It uses the CUDA execution provider when onnxruntime has it and a GPU is visible.
Requests of one batch are run together when the model has a batch dimension; a request
that fails is answered with its own error and does not fail the others.

Memory share. Each model instance is its own stub process; the config's `memory_limit_mb`
is what it may allocate beyond what it has mapped when the work starts. While onnxruntime
builds the session, and while a batch is merged and run, the address space is capped
(RLIMIT_AS) at what is mapped plus the share: an allocation past it fails inside
onnxruntime or numpy, which raise, so that load or that request fails with the reason and
the process lives on. It must: this Triton build does not restart a dead stub, whose
model stays "ready" and answers "Stub process is not healthy" until it is reloaded.
Between runs the cap is lifted: the stub maps Triton's shared memory (inputs, outputs) as
it grows, keeping the old mappings, and a mapping refused under a cap broke the stub and
then aborted the whole server (boost::interprocess::lock_exception). Outside the cap the
stub copies the outputs, which fit in the share, into shared memory.
The cap is relative, so nothing may keep memory between runs: onnxruntime's CPU arena is
off (a large request's memory goes back when it is answered), and glibc gets one malloc
arena rather than 64 MB of address space for each thread that allocates.
GPU instances cap device memory with the CUDA provider's `gpu_mem_limit` instead: a CUDA
context reserves and maps address space as it goes, so the host cap is not applied."""
import ctypes
import json
import os
import resource
from contextlib import contextmanager, nullcontext

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

M_ARENA_MAX = -8  # glibc's mallopt parameter
# How onnxruntime (its arena, or operator new) and numpy say that an allocation failed.
ALLOCATION_FAILURES = ("bad_alloc", "Failed to allocate memory", "Unable to allocate")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def allocation_failed(exc: BaseException) -> bool:
    return isinstance(exc, MemoryError) or any(marker in str(exc) for marker in ALLOCATION_FAILURES)


class MemoryShare:
    """Caps the process's address space at what it has mapped plus `share_mb`, for the
    duration of a `with` block. The first field of /proc/self/statm is VmSize in pages;
    an open descriptor re-read with pread costs about 16 us (reading /proc/self/status
    line by line, 170 us)."""

    def __init__(self, share_mb: int):
        self.share_mb = share_mb
        self._share_bytes = share_mb * 2**20
        self._statm = os.open("/proc/self/statm", os.O_RDONLY)
        self._outside = resource.getrlimit(resource.RLIMIT_AS)
        ctypes.CDLL(None).mallopt(M_ARENA_MAX, 1)

    def mapped(self) -> int:
        return int(os.pread(self._statm, 64, 0).split(None, 1)[0]) * PAGE_SIZE

    @contextmanager
    def cap(self):
        soft, hard = self.mapped() + self._share_bytes, self._outside[1]
        if hard != resource.RLIM_INFINITY:
            soft = min(soft, hard)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
        try:
            yield
        finally:
            resource.setrlimit(resource.RLIMIT_AS, self._outside)


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        share_mb = int(config.get("parameters", {}).get("memory_limit_mb", {}).get("string_value") or 0)
        gpu = "CUDAExecutionProvider" in ort.get_available_providers() and args.get("model_instance_kind") == "GPU"
        providers = ["CPUExecutionProvider"]
        if gpu:
            cuda = {"device_id": int(args.get("model_instance_device_id", 0))}
            if share_mb:
                cuda.update(gpu_mem_limit=share_mb * 2**20, arena_extend_strategy="kSameAsRequested")
            providers.insert(0, ("CUDAExecutionProvider", cuda))
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(os.environ.get("RUNNER_INTRA_OP_THREADS", "1"))
        self.share = MemoryShare(share_mb) if share_mb and not gpu else None
        self.share_mb = share_mb
        if self.share:
            options.enable_cpu_mem_arena = False
        try:
            with self._capped():
                self.session = ort.InferenceSession(path, sess_options=options, providers=providers)
        except Exception as exc:
            if share_mb and allocation_failed(exc):
                raise RuntimeError(f"Out of memory: building the model needs more than the deployment's memory "
                                   f"share of {share_mb} MB per instance ({exc})") from None
            raise RuntimeError(f"onnxruntime could not build a session for the model: {exc}") from None
        self.input_names = [i["name"] for i in config["input"]]
        self.output_names = [o["name"] for o in config["output"]]
        self.batched = int(config.get("max_batch_size", 0)) > 0

    def _capped(self):
        return self.share.cap() if self.share else nullcontext()

    def _run(self, feeds):
        with self._capped():
            return self.session.run(self.output_names, feeds)

    def _run_merged(self, feeds):
        with self._capped():
            merged = {n: np.concatenate([f[n] for f in feeds], axis=0) for n in self.input_names}
            return self.session.run(self.output_names, merged)

    def _respond(self, outputs):
        return pb_utils.InferenceResponse(
            output_tensors=[pb_utils.Tensor(n, np.ascontiguousarray(v))
                            for n, v in zip(self.output_names, outputs, strict=False)]
        )

    def _error(self, exc):
        if self.share_mb and allocation_failed(exc):
            # The same request fails the same way again: the caller's (or the model's) to change.
            return pb_utils.InferenceResponse(error=pb_utils.TritonError(
                f"Out of memory: the request needs more than the deployment's memory share of {self.share_mb} MB "
                f"per instance ({type(exc).__name__}: {exc})", pb_utils.TritonError.INVALID_ARG))
        return pb_utils.InferenceResponse(error=pb_utils.TritonError(f"{type(exc).__name__}: {exc}"))

    def execute(self, requests):
        feeds = []
        for request in requests:
            feeds.append({n: pb_utils.get_input_tensor_by_name(request, n).as_numpy() for n in self.input_names})
        if self.batched and len(requests) > 1:
            try:
                sizes = [f[self.input_names[0]].shape[0] for f in feeds]
                outputs = self._run_merged(feeds)
                if all(o.shape[0] == sum(sizes) for o in outputs):
                    bounds = np.cumsum([0] + sizes)
                    return [
                        self._respond([o[bounds[i]:bounds[i + 1]] for o in outputs]) for i in range(len(requests))
                    ]
            except Exception:
                pass  # run them one by one below, so only the bad request fails
            outputs = None  # what the batch held goes back before they run
        responses = []
        for feed in feeds:
            try:
                responses.append(self._respond(self._run(feed)))
            except Exception as exc:
                responses.append(self._error(exc))
        return responses
