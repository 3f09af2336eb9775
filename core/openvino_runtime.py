"""The shipped models through OpenVINO: the same `model.onnx` that ONNX Runtime serves, compiled for
this CPU. Where the CPU computes bfloat16 natively (AMX, AVX-512 BF16) OpenVINO runs the network in
bfloat16, several times faster than float32 (the ten-crop test of a face 2.4 against 14.6 ms on two
cores); Classifier reads near ties again in float32, so the labels stay the Keras model's."""
from __future__ import annotations

import threading
from functools import lru_cache
from pathlib import Path

import numpy as np

from core.onnx_runtime import ViewForward, Views

BFLOAT16, FLOAT32 = "bf16", "f32"


def openvino_available() -> bool:
    """Whether OpenVINO can be imported here."""
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


@lru_cache(maxsize=1)
def native_bfloat16() -> bool:
    """Whether OpenVINO computes bfloat16 natively on this CPU (its own report; False where it has no CPU plugin)."""
    import openvino as ov

    try:
        return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except RuntimeError:
        return False


class OpenVinoForward(ViewForward):
    """The views through an OpenVINO compiled model at `precision` ("bf16" or "f32"). Thread-safe:
    each thread has its own inference requests."""

    runtime = "openvino"

    def __init__(self, path: Path, views: Views, precision: str = FLOAT32, threads: int | None = None):
        import openvino as ov

        super().__init__(views, threads)
        core = ov.Core()
        model = core.read_model(str(path))

        def compile_for(streams: int):
            return core.compile_model(model, "CPU", {
                "INFERENCE_PRECISION_HINT": precision, "NUM_STREAMS": streams,
                "INFERENCE_NUM_THREADS": self.threads, "ENABLE_CPU_PINNING": False})   # leave the cores to others

        # small calls: one thread each, as many at once as there are cores (the sessions' streams call
        # concurrently); large calls: every core on one call
        self.single = compile_for(self.threads)
        self.parallel = compile_for(1) if self.threads > 1 else self.single
        self.precision = self.single.get_property("INFERENCE_PRECISION_HINT").to_string()   # what OpenVINO chose
        self._local = threading.local()

    def _request(self, parallel: bool):
        requests = self._local.__dict__.setdefault("requests", {})
        if parallel not in requests:
            requests[parallel] = (self.parallel if parallel else self.single).create_infer_request()
        return requests[parallel]

    def _run(self, x: np.ndarray, parallel: bool) -> np.ndarray:
        return self._request(parallel).infer({0: x})[0]

    def io_shapes(self) -> tuple[tuple, int]:
        def dims(port):
            return [d.get_length() if d.is_static else None for d in port.get_partial_shape()]

        return tuple(dims(self.single.input(0))[1:]), dims(self.single.output(0))[-1]
