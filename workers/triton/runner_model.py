"""Triton Python-backend runner for one ONNX model, executed by onnxruntime.

Generated deployments copy this file as `<model>/1/model.py` next to `model.onnx`.
It uses the CUDA execution provider when onnxruntime has it and a GPU is visible.
Requests of one batch are run together when the model has a batch dimension; a request
that fails is answered with its own error and does not fail the others."""
import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        providers = ["CPUExecutionProvider"]
        if "CUDAExecutionProvider" in ort.get_available_providers() and args.get("model_instance_kind") == "GPU":
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": int(args.get("model_instance_device_id", 0))}))
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(os.environ.get("RUNNER_INTRA_OP_THREADS", "1"))
        self.session = ort.InferenceSession(path, sess_options=options, providers=providers)
        self.input_names = [i["name"] for i in config["input"]]
        self.output_names = [o["name"] for o in config["output"]]
        self.batched = int(config.get("max_batch_size", 0)) > 0

    def _run(self, feeds):
        return self.session.run(self.output_names, feeds)

    def _respond(self, outputs):
        return pb_utils.InferenceResponse(
            output_tensors=[pb_utils.Tensor(n, np.ascontiguousarray(v)) for n, v in zip(self.output_names, outputs)]
        )

    def _error(self, exc):
        return pb_utils.InferenceResponse(error=pb_utils.TritonError(f"{type(exc).__name__}: {exc}"))

    def execute(self, requests):
        feeds = []
        for request in requests:
            feeds.append({n: pb_utils.get_input_tensor_by_name(request, n).as_numpy() for n in self.input_names})
        if self.batched and len(requests) > 1:
            try:
                sizes = [f[self.input_names[0]].shape[0] for f in feeds]
                merged = {n: np.concatenate([f[n] for f in feeds], axis=0) for n in self.input_names}
                outputs = self._run(merged)
                if all(o.shape[0] == sum(sizes) for o in outputs):
                    bounds = np.cumsum([0] + sizes)
                    return [
                        self._respond([o[bounds[i]:bounds[i + 1]] for o in outputs]) for i in range(len(requests))
                    ]
            except Exception:
                pass  # fall through: run one by one, so only the bad request fails
        responses = []
        for feed in feeds:
            try:
                responses.append(self._respond(self._run(feed)))
            except Exception as exc:
                responses.append(self._error(exc))
        return responses
