"""Loading a Grin model folder (model.keras + metadata.json) and running it in one compiled call: through a
runtime that serves its current export (ONNX Runtime, OpenVINO) without TensorFlow, else through Keras."""
from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from core.decision import decision_margin
from core.onnx_runtime import (INT8, INT8_FILE, INT8_META, ONNX_FILE, OnnxForward, Views, onnx_available,
                               stale_reason)
from core.preprocess import EQUALIZE, MAX_DEBLOCK, MAX_INPUT, MIN_INPUT, PreprocessConfig
from core.runtime import tensorflow
from core.tasks import Task, get_task

MODEL_FILE = "model.keras"
# the four corner crops of a ten-crop test (with the whole face, each also mirrored when tta_flip)
CORNER_CROPS = [[0.0, 0.0, 0.9, 0.9], [0.0, 0.1, 0.9, 1.0], [0.1, 0.0, 1.0, 0.9], [0.1, 0.1, 1.0, 1.0]]
META_FILE = "metadata.json"
RUNTIMES = ("auto", "keras", "onnx", "int8", "openvino")
RUNTIME_TITLES = {"keras": "Keras", "onnx": "ONNX Runtime", "int8": "ONNX Runtime in int8", "openvino": "OpenVINO"}
# bfloat16 reads closer than this to another decision are read again in float32 (the largest bfloat16
# difference seen on 7,778 test faces was 0.03 of a probability; ties flipped only below 0.013)
NEAR_TIE = 0.1


class KerasParts(NamedTuple):
    """A model folder's Keras network and its compiled calls: uint8 faces to view-averaged probabilities
    (`forward`), float32 network inputs to probabilities (`network`)."""

    model: Any
    forward: Any
    network: Any


class ModelError(ValueError):
    """A model folder that cannot be used; the message says why."""


@dataclass
class ModelMeta:
    """What is saved beside every model: enough to preprocess, run and describe it."""

    task: str
    class_names: list[str]
    preprocess: dict
    arch: str = ""
    tta_flip: bool = True
    tta_crops: list[list[float]] = field(default_factory=list)  # extra views: [y1, x1, y2, x2] in 0..1
    threshold: float = 0.5
    class_bias: list[float] = field(default_factory=list)   # prior correction: added to log-probabilities
    metrics: dict = field(default_factory=dict)
    command: str = ""
    created: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def preprocess_config(self) -> PreprocessConfig:
        return PreprocessConfig.from_dict(self.preprocess)

    def save(self, folder: Path) -> None:
        from core.fileio import write_json_atomic

        write_json_atomic(Path(folder) / META_FILE, asdict(self))

    @classmethod
    def load(cls, folder: Path) -> "ModelMeta":
        path = Path(folder) / META_FILE
        if not path.is_file():
            raise ModelError(f"{folder}: no {META_FILE} beside the model")
        try:
            d = json.loads(path.read_text())
            return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})
        except (json.JSONDecodeError, TypeError) as exc:
            raise ModelError(f"{path}: unreadable metadata ({exc})") from None

    def validate(self) -> Task:
        """Check the metadata against the task registry; return the task."""
        try:
            task = get_task(self.task)
        except KeyError as exc:
            raise ModelError(str(exc)) from None
        if tuple(self.class_names) != task.class_names:
            raise ModelError(f"model classes {self.class_names} do not match task '{task.name}' "
                             f"{list(task.class_names)}")
        pp = self.preprocess_config
        if pp.color_mode != task.color_mode or not MIN_INPUT <= pp.input_size <= MAX_INPUT:
            raise ModelError(f"model input {pp.input_size}px {pp.color_mode} does not fit task '{task.name}' "
                             f"({task.color_mode} faces of {MIN_INPUT} to {MAX_INPUT}px)")
        if self.class_bias and len(self.class_bias) != len(task.class_names):
            raise ModelError(f"model class_bias has {len(self.class_bias)} values for {len(task.class_names)} classes")
        if pp.equalize not in EQUALIZE:
            raise ModelError(f"model contrast normalisation '{pp.equalize}' is unknown to this Grin "
                             f"(it knows {', '.join(EQUALIZE)})")
        if not 0 <= pp.deblock <= MAX_DEBLOCK:
            raise ModelError(f"model deblocking sigma {pp.deblock} is outside 0-{MAX_DEBLOCK} px")
        return task


def apply_class_bias(probs: np.ndarray, bias: list[float] | np.ndarray | None) -> np.ndarray:
    """Probabilities after a prior correction: `bias` added to their logarithms, then renormalised
    (none: unchanged). It moves the decision between classes the network over- or under-calls."""
    if bias is None or len(bias) == 0:
        return probs
    logits = np.log(np.maximum(probs, 1e-7)) + np.asarray(bias, np.float32)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def export_runtime(exact: bool = False) -> str:
    """What "auto" serves a current float32 export through on this machine, before an int8 copy is looked
    for: OpenVINO where the CPU computes bfloat16 natively (or ONNX Runtime is missing), else ONNX Runtime."""
    from core.openvino_runtime import native_bfloat16, openvino_available

    bfloat16 = not exact and openvino_available() and native_bfloat16()
    return "openvino" if openvino_available() and (bfloat16 or not onnx_available()) else "onnx"


class Classifier:
    """A loaded model: uint8 face crops in, class probabilities out. Thread-safe."""

    def __init__(self, folder: str | Path, warm_up: bool = True, crops: bool = True, runtime: str = "auto",
                 exact: bool = False):
        """`crops=False` skips the model's extra test-time crops (flip averaging stays): faster, less accurate.
        `runtime`: "auto" serves a current model.onnx (same labels, faster on CPU) through OpenVINO in
        bfloat16 where the CPU computes it natively, else its current int8 copy (model.int8.onnx, made by
        training.quantize) through ONNX Runtime where there is one, else model.onnx through ONNX Runtime, else
        Keras; "keras" always Keras; "onnx" (ONNX Runtime in float32), "int8" and "openvino" refuse to run
        without their runtime and a current export. A bfloat16 or int8 read that lies near another decision
        is read again in float32 (see `predict`).
        The environment variable GRIN_RUNTIME, when set, stands for "auto". `exact`: float32 probabilities,
        for measurements (thresholds, fitted offsets, ROC AUC, calibration); without it a bfloat16 read may
        differ from them by a few hundredths where no decision depends on it."""
        source = "runtime"
        if runtime == "auto" and os.environ.get("GRIN_RUNTIME"):   # an operator's choice for the whole server
            source, runtime = "GRIN_RUNTIME", os.environ["GRIN_RUNTIME"]
        if runtime not in RUNTIMES:
            raise ModelError(f"{source} must be one of {', '.join(RUNTIMES)}, not '{runtime}'")
        self.folder = Path(folder)
        self.meta = ModelMeta.load(self.folder)
        self.crops = [list(map(float, b)) for b in self.meta.tta_crops] if crops else []
        for box in self.crops:
            y1, x1, y2, x2 = box if len(box) == 4 else (0, 0, 0, 0)
            if not (0 <= y1 < y2 <= 1 and 0 <= x1 < x2 <= 1):
                raise ModelError(f"{self.folder}: bad test-time crop {box} in {META_FILE}")
        self.task = self.meta.validate()
        self.preprocess = self.meta.preprocess_config
        path = self.folder / MODEL_FILE
        if not path.is_file():
            raise ModelError(f"{self.folder}: no {MODEL_FILE}")
        self.views = Views(self.preprocess.input_size, tuple(tuple(b) for b in self.crops), self.meta.tta_flip)
        self._keras_lock = threading.Lock()
        self._keras: KerasParts | None = None   # loaded when Keras serves, else on first use
        self._fast, self._exact = self._runtime_forward(path, runtime, exact)
        if self._fast is None:
            self._keras_parts()   # Keras serves: load and check it now
        else:   # a runtime serves the export of this very model.keras: TensorFlow is not imported for it
            self._check_shapes(*self._fast.io_shapes())
        self.runtime = self._fast.runtime if self._fast else "keras"
        self.precision = self._fast.precision if self._fast else "f32"   # what the network computes in
        if warm_up:
            for n in (1, 4):
                self.predict(np.zeros((n, *self.preprocess.input_shape), np.uint8))

    def _check_shapes(self, input_shape: tuple, n_outputs: int) -> None:
        """The network's input shape (without the batch) and class count against the metadata's."""
        if tuple(input_shape) != tuple(self.preprocess.input_shape) or n_outputs != self.task.n_classes:
            raise ModelError(f"{self.folder / MODEL_FILE}: model shapes {(None, *input_shape)} -> {(None, n_outputs)} "
                             f"do not match its metadata {(None, *self.preprocess.input_shape)} -> "
                             f"{self.task.n_classes} classes")

    def _keras_parts(self) -> KerasParts:
        """The Keras model and its two compiled calls, loaded once (TensorFlow imported then)."""
        with self._keras_lock:
            if self._keras is None:
                tf = tensorflow()
                import keras

                path = self.folder / MODEL_FILE
                try:
                    model = keras.saving.load_model(path, safe_mode=True, compile=False)
                except Exception as exc:  # keras raises many types for bad files
                    raise ModelError(f"{path}: cannot be loaded safely ({type(exc).__name__}: {exc})") from None
                self._check_shapes(tuple(model.input_shape[1:]), model.output_shape[-1])
                spec = tf.TensorSpec((None, *self.preprocess.input_shape), tf.uint8)
                raw = tf.TensorSpec((None, *self.preprocess.input_shape), tf.float32)
                forward = tf.function(lambda x: self._forward_impl(model, x), input_signature=[spec])
                network = tf.function(lambda x: tf.cast(model(x, training=False), tf.float32), input_signature=[raw])
                self._keras = KerasParts(model, forward, network)
        return self._keras

    @property
    def model(self):
        """The Keras model (explanations, exports and training use it; predictions need it only where no
        runtime serves the folder's export)."""
        return self._keras_parts().model

    def _runtime_forward(self, source: Path, runtime: str, exact: bool):
        """The fast path for this folder and, where it reads in bfloat16 or int8, the float32 path that
        reads its near ties again; (None, None) when Keras serves it."""
        from core.openvino_runtime import BFLOAT16, FLOAT32, OpenVinoForward, native_bfloat16, openvino_available

        if runtime == "keras":
            return None, None
        available = {"onnx": onnx_available, "int8": onnx_available, "openvino": openvino_available}.get(
            runtime, lambda: onnx_available() or openvino_available())
        name = RUNTIME_TITLES.get(runtime, "")
        reason = stale_reason(self.folder, source) or ("" if available() else f"{name or 'no runtime'} is not installed")
        if reason:
            if runtime != "auto":
                raise ModelError(f"{self.folder}: cannot serve through {name}: {reason}")
            return None, None
        views = self.views
        path = self.folder / ONNX_FILE
        bfloat16 = not exact and runtime not in ("onnx", "int8") and openvino_available() and native_bfloat16()
        if runtime == "int8":
            int8_reason = stale_reason(self.folder, source, INT8_FILE, INT8_META)
            if int8_reason:
                raise ModelError(f"{self.folder}: cannot serve through {name}: {int8_reason}")
        chosen = runtime
        if runtime == "auto":   # OpenVINO where it pays (bfloat16), then an int8 copy, then ONNX Runtime
            chosen = export_runtime(exact)
            if chosen == "onnx" and not exact and not stale_reason(self.folder, source, INT8_FILE, INT8_META):
                chosen = "int8"   # (model.keras is hashed again only where an int8 copy could serve)
        if chosen == "int8" and not exact:   # exact: the float32 export, for measurements
            return (OnnxForward(self.folder / INT8_FILE, views, precision=INT8),
                    OnnxForward(path, views))
        if chosen == "openvino":
            try:
                fast = OpenVinoForward(path, views, BFLOAT16 if bfloat16 else FLOAT32)
                return fast, (OpenVinoForward(path, views, FLOAT32) if fast.precision == BFLOAT16 else None)
            except RuntimeError as exc:   # OpenVINO cannot compile it here: ONNX Runtime, unless that was asked
                if runtime == "openvino" or not onnx_available():
                    raise ModelError(f"{self.folder}: cannot serve through {RUNTIME_TITLES['openvino']}: {exc}") from None
        return OnnxForward(path, views), None

    @property
    def n_views(self) -> int:
        """Model runs per face: the face and its extra crops, each twice with flip averaging."""
        return self.views.count

    def _forward_impl(self, model, x):
        tf = tensorflow()
        x = tf.cast(x, tf.float32)
        n = tf.shape(x)[0]
        size = self.preprocess.input_shape[:2]
        views = [x]
        for box in self.crops:
            boxes = tf.tile(tf.constant([box], tf.float32), [n, 1])
            views.append(tf.image.crop_and_resize(x, boxes, tf.range(n), size))
        if self.meta.tta_flip:
            views += [tf.reverse(v, axis=[2]) for v in views]
        if len(views) == 1:
            return tf.cast(model(x, training=False), tf.float32)
        probs = tf.cast(model(tf.concat(views, 0), training=False), tf.float32)
        return tf.reduce_mean(tf.reshape(probs, (len(views), n, -1)), axis=0)

    def predict(self, faces: np.ndarray, batch_size: int = 256, view: int | None = None,
                threshold: float | None = None, reread_near_ties: bool = True,
                class_bias: list[float] | tuple[float, ...] | None = None) -> np.ndarray:
        """Probabilities (N, n_classes) for uint8 crops (N, size, size, channels). `view` k: only the
        k-th view (k modulo n_views, see Views), a fraction of the cost; a stream averages them over frames.
        `threshold`: the decision threshold the caller will apply (binary tasks; None: the model's).
        `class_bias`: offsets added to the log-probabilities instead of the model's own (see `class_bias`).
        `reread_near_ties=False`: a bfloat16 or int8 read alone, to measure what the re-read saves."""
        if len(faces) == 0:
            return np.zeros((0, self.task.n_classes), np.float32)
        bias = self.class_bias(class_bias)
        probs = self._probs(self._fast, faces, batch_size, view, bias)
        if self._exact is not None and reread_near_ties:   # near ties read again in float32: Keras's labels
            cut = self.meta.threshold if threshold is None else threshold
            near = np.flatnonzero(decision_margin(probs, self.task, cut) < NEAR_TIE)
            if len(near):
                probs[near] = self._probs(self._exact, faces[near], batch_size, view, bias)
        return probs

    def class_bias(self, override: list[float] | tuple[float, ...] | None = None) -> list[float]:
        """The offsets a prediction adds to the log-probabilities: `override`, else the model's own
        (metadata `class_bias`; none: [])."""
        if override is None:
            return list(self.meta.class_bias or [])
        if len(override) != self.task.n_classes or not np.all(np.isfinite(override)):
            raise ModelError(f"class offsets must be {self.task.n_classes} finite numbers, not {list(override)}")
        return [float(b) for b in override]

    def _probs(self, fast, faces: np.ndarray, batch_size: int, view: int | None,
               bias: list[float]) -> np.ndarray:
        """Probabilities through `fast` (a runtime's forward), else Keras, with `bias` applied."""
        if view is not None and self.n_views > 1:
            run = (lambda x: fast(x, view)) if fast else (lambda x: self._view_forward(x, view))
        else:
            run = fast or (lambda x: self._keras_parts().forward(x).numpy())
        out = [run(faces[i:i + batch_size]) for i in range(0, len(faces), batch_size)]
        return apply_class_bias(np.concatenate(out), bias)

    def _view_forward(self, faces: np.ndarray, view: int) -> np.ndarray:
        return self._keras_parts().network(self.views(faces, view)).numpy()

    @property
    def n_params(self) -> int:
        return int(self.model.count_params())
