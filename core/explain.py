"""Why a face got its label: heat maps of where the evidence for a class lies in the crop the model saw.

Two methods, each one batched, compiled call for any number of faces:
- Grad-CAM on a convolutional block: the one named by the model's metadata (`explain_layer`, chosen by
  `python -m bench.explain_check --write-layer` as the block whose maps agree best with occlusion on
  validation faces), else the last layer with a spatial 4-D output before pooling;
- occlusion sensitivity (model-agnostic): every masked copy of every face in one batch, and how much
  the class's evidence drops when each square of the crop is hidden.

The evidence for class c is its logit against the mean of the others' (softmax ignores a shift
common to all logits, so only this contrast moves the probability). Both methods explain the plain
network on the crop from `core.preprocess.crop_faces` (not the model's test-time views). Maps are
(H, W) float32 in [0, 1], scaled so their maximum is 1 (all 0 when nothing speaks for the class).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

from core.detect import Box
from core.model import Classifier
from core.preprocess import PreprocessConfig, crop_box, crop_faces
from core.runtime import tensorflow

METHODS = ("grad-cam", "occlusion")
MOUTH = (2 / 3, 1.0)             # the mouth region: the lower third of the crop (fractions of its height)
FACE_CHUNK = {"grad-cam": 64, "occlusion": 8}   # faces per compiled call (occlusion: x masks each)
# occlusion: a 4 x 4 grid of squares a third of the crop wide (17 network runs per face: the
# expression network costs about 2 ms a run on the 2-core reference machine)
OCCLUSION_GRID, OCCLUSION_PATCH = 4, 1 / 3


@dataclass(frozen=True)
class Explanation:
    """A heat map for one face crop and the class it explains."""

    heat: np.ndarray             # (H, W) float32 in [0, 1], max 1 (all 0: no evidence for the class)
    target: int                  # the class explained (index in the task's classes)
    probs: np.ndarray            # the plain network's probabilities for the crop
    method: str

    @property
    def mouth_share(self) -> float | None:
        """Share of the map's mass on the lower third of the crop; None for an empty map."""
        return region_share(self.heat, MOUTH)


def region_share(heat: np.ndarray, rows: tuple[float, float] = MOUTH) -> float | None:
    """Share of a map's mass in a band of rows given as fractions of its height (a uniform map
    gives exactly the band's height, partial rows counted in proportion); None if the map is empty."""
    heat = np.asarray(heat, np.float64)
    total = heat.sum()
    if not total > 0:
        return None
    return float((heat.sum(axis=1) * band_weights(heat.shape[0], rows)).sum() / total)


def band_weights(n: int, rows: tuple[float, float]) -> np.ndarray:
    """Per row of an n-row map, the part of it inside the band [rows[0], rows[1]) of the height."""
    lo, hi = rows[0] * n, rows[1] * n
    edges = np.arange(n + 1, dtype=np.float64)
    return np.clip(np.minimum(edges[1:], hi) - np.maximum(edges[:-1], lo), 0.0, 1.0)


def last_conv_layer(model):
    """The last layer with a spatial 4-D output (batch, h, w, channels), h * w > 1: the last
    convolutional block, before global pooling or flattening. ValueError if there is none."""
    for layer in reversed(model.layers[1:]):
        shape = getattr(layer, "output", None) is not None and tuple(layer.output.shape)
        if shape and len(shape) == 4 and (shape[1] or 0) * (shape[2] or 0) > 1 and \
                type(layer).__name__ not in ("InputLayer", "Rescaling"):
            return layer
    raise ValueError(f"model '{model.name}' has no convolutional layer with a spatial output to explain")


def _logits(model):
    """The tensor before the final softmax (or the log of the output when there is none)."""
    import keras

    last = model.layers[-1]
    if type(last).__name__ == "Activation" and getattr(last.activation, "__name__", "") == "softmax":
        return last.input
    return keras.ops.log(model.output + 1e-7)


def occlusion_masks(size: int, grid: int = OCCLUSION_GRID, patch: float = OCCLUSION_PATCH) -> np.ndarray:
    """(grid * grid, size, size) float32 squares of side `patch` x size, evenly spaced from edge to
    edge with overlap, so every pixel is hidden at least once."""
    side = max(1, int(round(size * patch)))
    starts = np.round(np.linspace(0, size - side, grid)).astype(int)
    masks = np.zeros((grid * grid, size, size), np.float32)
    for k, (y, x) in enumerate((y, x) for y in starts for x in starts):
        masks[k, y:y + side, x:x + side] = 1.0
    return masks


class Explainer:
    """Heat maps for a loaded Classifier's plain network; compiled once, thread-safe."""

    def __init__(self, classifier: Classifier, layer: str | None = None, warm_up: bool = True):
        tf = tensorflow()
        import keras

        self.classifier = classifier
        model = classifier.model
        layer = layer or classifier.meta.extra.get("explain_layer")
        if layer and layer not in {l.name for l in model.layers}:
            raise ValueError(f"model '{model.name}' has no layer '{layer}' to explain")
        self.layer = model.get_layer(layer) if layer else last_conv_layer(model)
        self._net = keras.Model(model.input, [self.layer.output, _logits(model)])
        shape = classifier.preprocess.input_shape
        self.masks = occlusion_masks(shape[0])
        self._masks = tf.constant(self.masks)
        spec = [tf.TensorSpec((None, *shape), tf.uint8), tf.TensorSpec((None,), tf.int32)]
        self._calls = {"grad-cam": tf.function(self._gradcam_impl, input_signature=spec),
                       "occlusion": tf.function(self._occlusion_impl, input_signature=spec)}
        if warm_up:
            for method in METHODS:
                self.explain(np.zeros((1, *shape), np.uint8), method=method)

    @property
    def preprocess(self) -> PreprocessConfig:
        return self.classifier.preprocess

    @property
    def resolution(self) -> tuple[int, int]:
        """The Grad-CAM map's own size (h, w) before it is scaled up to the crop."""
        return tuple(int(v) for v in self.layer.output.shape[1:3])

    @staticmethod
    def _evidence(logits, targets):
        """Per row: the target's logit minus the mean of the other classes' logits."""
        tf = tensorflow()
        n_classes = tf.shape(logits)[-1]
        onehot = tf.one_hot(targets, n_classes, dtype=logits.dtype)
        own = tf.reduce_sum(logits * onehot, axis=-1)
        others = (tf.reduce_sum(logits, axis=-1) - own) / tf.cast(n_classes - 1, logits.dtype)
        return own - others

    @staticmethod
    def _chosen(logits, targets):
        """The given classes, the likeliest one where a target is -1."""
        tf = tensorflow()
        return tf.where(targets < 0, tf.argmax(logits, axis=-1, output_type=tf.int32), targets)

    @staticmethod
    def _normalise(heat):
        tf = tensorflow()
        heat = tf.nn.relu(heat)
        peak = tf.reduce_max(heat, axis=[1, 2], keepdims=True)
        return tf.math.divide_no_nan(heat, peak)

    def _gradcam_impl(self, x, targets):
        tf = tensorflow()
        x = tf.cast(x, tf.float32)
        with tf.GradientTape() as tape:
            acts, logits = self._net(x, training=False)
            logits = tf.cast(logits, tf.float32)
            targets = self._chosen(logits, targets)
            score = self._evidence(logits, targets)
        grads = tape.gradient(score, acts)
        weights = tf.reduce_mean(grads, axis=[1, 2], keepdims=True)
        cam = tf.reduce_sum(weights * acts, axis=-1, keepdims=True)
        cam = tf.image.resize(tf.nn.relu(cam), tf.shape(x)[1:3], method="bilinear")[..., 0]
        return self._normalise(cam), tf.nn.softmax(logits), targets

    def _occlusion_impl(self, x, targets):
        tf = tensorflow()
        x = tf.cast(x, tf.float32)
        n, k = tf.shape(x)[0], tf.shape(self._masks)[0]
        m = self._masks[None, :, :, :, None]                       # (1, K, H, W, 1)
        fill = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)[:, None]   # each face's mean grey
        hidden = x[:, None] * (1.0 - m) + fill * m                 # (N, K, H, W, C)
        batch = tf.concat([x, tf.reshape(hidden, tf.concat([[-1], tf.shape(x)[1:]], 0))], 0)
        _, logits = self._net(batch, training=False)
        logits = tf.cast(logits, tf.float32)
        targets = self._chosen(logits[:n], targets)
        score = self._evidence(logits, tf.concat([targets, tf.repeat(targets, k)], 0))
        drop = score[:n, None] - tf.reshape(score[n:], (n, k))     # evidence lost when each square is hidden
        heat = tf.einsum("nk,khw->nhw", drop, self._masks) / tf.reduce_sum(self._masks, axis=0)
        return self._normalise(heat), tf.nn.softmax(logits[:n]), targets

    def explain(self, crops: np.ndarray, targets: Sequence[int] | None = None,
                method: str = "grad-cam") -> list[Explanation]:
        """One Explanation per uint8 crop (N, H, W, C) from `crop_faces`, for the given classes
        (default: the plain network's likeliest class)."""
        if method not in METHODS:
            raise ValueError(f"unknown explanation method '{method}'; choose from {', '.join(METHODS)}")
        crops = np.asarray(crops)
        shape = self.preprocess.input_shape
        if crops.dtype != np.uint8 or crops.ndim != 4 or crops.shape[1:] != shape:
            raise ValueError(f"expected uint8 face crops of shape (N, {', '.join(map(str, shape))}), "
                             f"not {crops.dtype} {crops.shape}")
        targets = np.full(len(crops), -1, np.int32) if targets is None else np.asarray(targets, np.int32).reshape(-1)
        n_classes = self.classifier.task.n_classes
        if len(targets) != len(crops) or (len(targets) and not (-1 <= targets.min() <= targets.max() < n_classes)):
            raise ValueError(f"need one target class in 0..{n_classes - 1} per crop")
        out, step = [], FACE_CHUNK[method]
        for i in range(0, len(crops), step):
            heat, probs, chosen = self._calls[method](crops[i:i + step], targets[i:i + step])
            out += [Explanation(h, int(t), p, method) for h, t, p in zip(heat.numpy(), chosen.numpy(), probs.numpy())]
        return out


@dataclass(frozen=True)
class FaceExplanation:
    """One face of a picture: its box, the crop the model saw and its heat maps (by method)."""

    box: Box
    crop: np.ndarray             # uint8 (H, W, C), as the model saw it
    maps: dict[str, Explanation]

    @property
    def explanation(self) -> Explanation:
        """The first method's map."""
        return next(iter(self.maps.values()))


def explain_faces(explainer: Explainer, image: np.ndarray, boxes: Sequence[Box],
                  targets: Sequence[int] | None = None,
                  method: str | Sequence[str] = "grad-cam") -> list[FaceExplanation]:
    """Heat maps by one method or several for the faces at `boxes` of an RGB image (targets: each
    face's decided class; default: the network's likeliest)."""
    methods = (method,) if isinstance(method, str) else tuple(method)
    crops = crop_faces(image, list(boxes), explainer.preprocess)
    found = {m: explainer.explain(crops, targets, m) for m in methods}
    return [FaceExplanation(tuple(int(v) for v in b), c, {m: found[m][i] for m in methods})
            for i, (b, c) in enumerate(zip(boxes, crops))]


def to_rgb(crop: np.ndarray) -> np.ndarray:
    """A (H, W, 1|3) or (H, W) uint8 crop as RGB."""
    crop = crop if crop.ndim == 3 else crop[:, :, None]
    return np.repeat(crop, 3, axis=2) if crop.shape[2] == 1 else crop


def colorize(heat: np.ndarray) -> np.ndarray:
    """A [0, 1] map as an RGB image (blue: none, red: most evidence)."""
    grey = np.clip(np.asarray(heat, np.float32) * 255, 0, 255).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(grey, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)


def enlarge(crop: np.ndarray, side: int) -> np.ndarray:
    """The crop as RGB, `side` px wide, its pixels kept sharp (what the model saw, bigger)."""
    return cv2.resize(to_rgb(crop), (side, side), interpolation=cv2.INTER_NEAREST)


def overlay(crop: np.ndarray, heat: np.ndarray, side: int | None = None, alpha: float = 0.6) -> np.ndarray:
    """The crop as RGB (enlarged to `side` px) with the map blended over it, more opaque where the
    evidence is stronger."""
    return blend(enlarge(crop, side or crop.shape[0]), heat, alpha)


def blend(rgb: np.ndarray, heat: np.ndarray, alpha: float = 0.6) -> np.ndarray:
    """An RGB image with a [0, 1] map (scaled to it) blended over it; a new array."""
    h, w = rgb.shape[:2]
    heat = cv2.resize(np.asarray(heat, np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    weight = (alpha * np.clip(heat, 0, 1))[:, :, None]
    return (rgb * (1 - weight) + colorize(heat) * weight).round().astype(np.uint8)


def side_by_side(crop: np.ndarray, heat: np.ndarray, side: int = 192, gap: int = 4) -> np.ndarray:
    """The enlarged crop and the same crop under its heat map, side by side (RGB)."""
    left = enlarge(crop, side)
    out = np.full((side, 2 * side + gap, 3), 255, np.uint8)
    out[:, :side], out[:, side + gap:] = left, blend(left, heat)
    return out


def draw_heat(image: np.ndarray, box: Box, heat: np.ndarray, cfg: PreprocessConfig,
              alpha: float = 0.5) -> np.ndarray:
    """Blend a face's map over the frame, in place, on the square its crop was cut from (the part
    inside the frame); returns the image."""
    x0, y0, side = crop_box(box, cfg)
    h, w = image.shape[:2]
    big = cv2.resize(np.asarray(heat, np.float32), (side, side), interpolation=cv2.INTER_LINEAR)
    xa, ya, xb, yb = max(0, x0), max(0, y0), min(w, x0 + side), min(h, y0 + side)
    if xb > xa and yb > ya:
        image[ya:yb, xa:xb] = blend(image[ya:yb, xa:xb], big[ya - y0:yb - y0, xa - x0:xb - x0], alpha)
    return image


def explanation_row(explanation: Explanation, task, file: str | None = None) -> dict:
    """The JSON of one face's explanation: its PNG, the method, the class explained, the mouth share."""
    share = explanation.mouth_share
    return {"file": file, "method": explanation.method, "class": task.class_names[explanation.target],
            "mouth_share": None if share is None else round(share, 4)}


def heat_picture(image: np.ndarray, found: Sequence[FaceExplanation], cfg: PreprocessConfig) -> np.ndarray:
    """A copy of the picture with each face's (first) heat map over the square its crop was cut from."""
    out = image.copy()
    for fe in found:
        draw_heat(out, fe.box, fe.explanation.heat, cfg)
    return out
