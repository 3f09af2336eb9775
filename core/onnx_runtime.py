"""The shipped models through ONNX Runtime: `model.onnx` beside `model.keras`, used only while it is
the export of that very file (its SHA-256 is recorded beside it); the test-time views are made here."""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

ONNX_FILE = "model.onnx"
ONNX_META = "model.onnx.json"   # {"source_sha256": sha256 of model.keras, "opset", "exporter", ...}
INT8 = "int8"                   # the int8 copy (training.quantize): its file, sidecar and precision name
INT8_FILE = "model.int8.onnx"
INT8_META = "model.int8.onnx.json"
INPUT_NAME = "x"                # float32 (N, size, size, channels), 0-255, as the Keras model takes


# how to make each file again when it stands for another model.keras ({folder}: the model folder)
REMAKE = {ONNX_FILE: "python -m core.export {folder}",
          INT8_FILE: "python -m core.export {folder}, then python -m training.quantize {folder} --data <its "
                     "training dataset>"}


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file; a file unchanged since it was last hashed (same size and modification time)
    is not read again (a model.keras is checked against each export that could serve it)."""
    st = os.stat(path)
    return _sha256(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=64)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def stale_reason(folder: Path, source: Path, onnx_file: str = ONNX_FILE, meta_file: str = ONNX_META) -> str:
    """Why the folder's ONNX file (the float32 export, or another such as the int8 copy) cannot stand
    for `source` ("" when it can)."""
    onnx_path, meta_path = folder / onnx_file, folder / meta_file
    if not onnx_path.is_file() or not meta_path.is_file():
        return f"no {onnx_file} with {meta_file}"
    try:
        recorded = json.loads(meta_path.read_text()).get("source_sha256")
    except (OSError, json.JSONDecodeError):
        return f"{meta_file} is unreadable"
    if recorded != sha256(source):
        return f"{onnx_file} was made from another {source.name} (run {REMAKE[onnx_file].format(folder=folder)})"
    return ""


def crop_matrix(lo: float, hi: float, size: int) -> np.ndarray:
    """(size, size) bilinear sampling weights of tf.image.crop_and_resize along one axis, for the
    normalised span [lo, hi] of an axis of `size` pixels resized to `size` pixels."""
    w = np.zeros((size, size), np.float32)
    pos = lo * (size - 1) + np.arange(size) * (hi - lo) * (size - 1) / max(size - 1, 1)
    top = np.floor(pos).astype(int)
    frac = (pos - top).astype(np.float32)
    bottom = np.minimum(top + 1, size - 1)
    np.add.at(w, (np.arange(size), top), 1.0 - frac)
    np.add.at(w, (np.arange(size), bottom), frac)
    return w


@dataclass(frozen=True)
class Views:
    """The network inputs for a batch of faces: the faces, their corner crops, each mirrored."""

    size: int
    crops: tuple[tuple[float, float, float, float], ...]
    flip: bool

    @property
    def count(self) -> int:
        """Network inputs per face: the face and each crop, each with its mirror where `flip`."""
        return (1 + len(self.crops)) * (2 if self.flip else 1)

    def _crop(self, x: np.ndarray, box) -> np.ndarray:
        if box is None:
            return x
        y1, x1, y2, x2 = box
        wy, wx = crop_matrix(y1, y2, self.size), crop_matrix(x1, x2, self.size)
        return np.einsum("ih,nhwc,jw->nijc", wy, x, wx, optimize=True)

    def __call__(self, faces: np.ndarray, view: int | None = None) -> np.ndarray:
        """(count * N, size, size, channels) float32, view-major like Classifier's TensorFlow path; `view` k
        (modulo `count`): that view alone, in the order the face, its mirror, the first crop, its mirror...
        (a stream reads one a frame, a crop and its mirror on consecutive frames)."""
        x, boxes = faces.astype(np.float32), [None, *self.crops]
        if view is not None:
            crop, mirrored = divmod(view % self.count, 2) if self.flip else (view % self.count, 0)
            one = self._crop(x, boxes[crop])
            return np.ascontiguousarray(one[:, :, ::-1] if mirrored else one)
        views = [self._crop(x, box) for box in boxes]
        if self.flip:
            views += [v[:, :, ::-1] for v in views]
        return np.ascontiguousarray(np.concatenate(views))


PARALLEL_VIEWS = 6   # a call of at least this many network inputs runs on every usable core, smaller ones on one


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:   # not Linux
        return os.cpu_count() or 1


def _session(path: Path, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")   # leave idle cores to others
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


class ViewForward:
    """uint8 faces in, view-averaged probabilities out, one runtime call per batch. Thread-safe.
    Small calls (a face or two of the smile model: 2 inputs each) run on one thread, where splitting
    costs more than it saves; larger ones (one face of the expression model's ten-crop test) on all
    usable cores, about twice as fast on two (`GRIN_ONNX_THREADS` sets that number). Subclasses run
    the network (`_run`)."""

    runtime = ""
    precision = "f32"

    def __init__(self, views: Views, threads: int | None = None):
        self.views = views
        self.threads = threads or int(os.environ.get("GRIN_ONNX_THREADS", "0")) or usable_cpus()

    def _run(self, x: np.ndarray, parallel: bool) -> np.ndarray:
        raise NotImplementedError

    def io_shapes(self) -> tuple[tuple, int]:
        """The network's input shape without the batch, and its number of outputs (classes)."""
        raise NotImplementedError

    def __call__(self, faces: np.ndarray, view: int | None = None) -> np.ndarray:
        """`view`: only that view (see Views), else the mean over every view."""
        x = self.views(faces, view)
        probs = self._run(x, len(x) >= PARALLEL_VIEWS).astype(np.float32)
        return probs.reshape(-1, len(faces), probs.shape[-1]).mean(axis=0)


class OnnxForward(ViewForward):
    """The views through ONNX Runtime: from the float32 export, the Keras model's probabilities to about
    1e-6; from the int8 copy (precision "int8", training.quantize), to a few hundredths."""

    runtime = "onnx"

    def __init__(self, path: Path, views: Views, threads: int | None = None, precision: str = "f32"):
        super().__init__(views, threads)
        self.precision = precision
        self.single = _session(path, 1)
        self.parallel = _session(path, self.threads) if self.threads > 1 else self.single

    def _run(self, x: np.ndarray, parallel: bool) -> np.ndarray:
        return (self.parallel if parallel else self.single).run(None, {INPUT_NAME: x})[0]

    def io_shapes(self) -> tuple[tuple, int]:
        return tuple(self.single.get_inputs()[0].shape[1:]), self.single.get_outputs()[0].shape[-1]


def onnx_available() -> bool:
    """Whether ONNX Runtime can be imported here."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True
