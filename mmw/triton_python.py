"""The shared part of this repository's Triton python models.

A model class (:mod:`mmw.triton_models`, imported by its generated ``model.py``) subclasses
:class:`BatchedStep` and implements ``compute``: numpy arrays in (by input name, batch first), numpy
arrays out (by output name). This class does the rest:
reading config.pbtxt parameters, merging the requests of a dynamic batch into one call, splitting
the results back, and turning exceptions into per-request errors so one bad request fails alone.
Importable only inside Triton's python backend stub (it provides ``triton_python_backend_utils``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import triton_python_backend_utils as pb_utils

from mmw.errors import MMWError


class BatchedStep:
    """Base class of a python model that computes on whole batches."""

    model_name: str
    parameters: dict[str, str]
    #: Merge the requests of a dynamic batch into one ``compute`` call; False when outputs depend on the
    #: position in the request (preprocess numbers each bad image by its index in its own request).
    merge_requests: bool = True
    #: Zero-pad inputs of different widths (e.g. BOXES padded per request) so they still merge.
    pad_to_merge: bool = False
    input_names: list[str]
    output_names: list[str]

    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        self.model_name = config["name"]
        self.model_dir = f"{args['model_repository']}/{args['model_version']}"
        self.parameters = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.input_names = [t["name"] for t in config["input"]]
        self.output_names = [t["name"] for t in config["output"]]
        self.setup()

    def setup(self) -> None:
        """Load what the step needs (sessions, thresholds); override when needed."""

    def log_runs_on(self, description: str, from_cache: bool = False, note: str = "") -> None:
        """One line in the server log: what runs this step's networks, and why it is not what was asked for."""
        cached = ", from OpenVINO's model cache" if from_cache else ""
        note = f" ({note})" if note else ""
        pb_utils.Logger.log_info(f"{self.model_name}: {description}{cached}{note}")

    def compute(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _inputs(self, request: object) -> dict[str, np.ndarray]:
        return {name: pb_utils.get_input_tensor_by_name(request, name).as_numpy() for name in self.input_names}

    def _response(self, outputs: dict[str, np.ndarray]) -> object:
        return pb_utils.InferenceResponse(
            output_tensors=[pb_utils.Tensor(name, outputs[name]) for name in self.output_names])

    @staticmethod
    def _reason(exc: Exception) -> str:
        return str(exc) if isinstance(exc, (MMWError, ValueError)) else f"{type(exc).__name__}: {exc}"

    def _error(self, exc: Exception) -> object:
        error = pb_utils.TritonError(f"{self.model_name}: {self._reason(exc)}")
        return pb_utils.InferenceResponse(output_tensors=[], error=error)

    def request_options(self, request: object) -> tuple:
        """Per-request settings (from request parameters); requests are merged only with equal options."""
        return ()

    def compute_with(self, inputs: dict[str, np.ndarray], options: tuple) -> dict[str, np.ndarray]:
        """``compute`` for requests sharing ``options``; override to use them."""
        return self.compute(inputs)

    def _one(self, inputs: dict[str, np.ndarray], options: tuple = ()) -> object:
        try:
            return self._response(self.compute_with(inputs, options))
        except Exception as exc:
            return self._error(exc)

    def execute(self, requests: Sequence[object]) -> list[object]:
        responses: list[object] = [None] * len(requests)
        groups: dict[tuple, list[int]] = {}
        for i, request in enumerate(requests):
            try:
                groups.setdefault(self.request_options(request), []).append(i)
            except Exception as exc:
                responses[i] = self._error(exc)
        for options, members in groups.items():
            for i, response in zip(members, self._execute_group([requests[i] for i in members], options), strict=True):
                responses[i] = response
        return responses

    def _execute_group(self, requests: Sequence[object], options: tuple) -> list[object]:
        per_request = [self._inputs(r) for r in requests]
        if len(per_request) == 1 or not self.merge_requests:
            return [self._one(inputs, options) for inputs in per_request]
        if self.pad_to_merge:
            per_request = _pad_ragged(per_request, self.input_names)
        shapes_match = all(
            len({a[name].shape[1:] for a in per_request}) == 1 for name in self.input_names
        )
        if not shapes_match:
            return [self._one(inputs, options) for inputs in per_request]
        sizes = [len(a[self.input_names[0]]) for a in per_request]
        merged = {name: np.concatenate([a[name] for a in per_request]) for name in self.input_names}
        try:
            outputs = self.compute_with(merged, options)
        except Exception as exc:
            # Rerun one request at a time so that only the bad one fails; say once why the merge failed.
            pb_utils.Logger.log_warn(f"{self.model_name}: a merged batch of {len(per_request)} requests failed "
                                     f"({self._reason(exc)}); running them one at a time")
            return [self._one(inputs, options) for inputs in per_request]
        responses, start = [], 0
        for size in sizes:
            part = {name: outputs[name][start : start + size] for name in self.output_names}
            responses.append(self._response(part))
            start += size
        return responses


def _pad_ragged(per_request: list[dict[str, np.ndarray]], names: list[str]) -> list[dict[str, np.ndarray]]:
    """Zero-pad each input to the largest shape among the requests (for padded, counted inputs such as BOXES)."""
    out = [dict(a) for a in per_request]
    for name in names:
        target = np.max([a[name].shape[1:] for a in per_request], axis=0)
        for a in out:
            pad = [(0, 0)] + [(0, int(t) - d) for t, d in zip(target, a[name].shape[1:], strict=True)]
            if any(p[1] for p in pad):
                a[name] = np.pad(a[name], pad, constant_values=b"" if a[name].dtype == object else 0)
    return out


class NetworkStep(BatchedStep):
    """A network step of the CPU repository: its exported network on OpenVINO or onnxruntime (config.pbtxt
    parameters ``runtime``, ``precision``, ``threads``), tensor names from config.pbtxt."""

    def setup(self) -> None:
        from mmw.network_runtimes import open_network

        self.runner, note = open_network(f"{self.model_dir}/{self.parameters['onnx_file']}",
                                         self.parameters["runtime"], self.parameters["precision"],
                                         int(self.parameters["threads"]))
        self.log_runs_on(self.runner.description, self.runner.loaded_from_cache, note)

    def compute(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = self.runner.run(self.output_names, inputs)
        return dict(zip(self.output_names, results, strict=True))
