"""Batch augmentation for tf.data: looser and tighter framings, flips, shifts, rotation, zoom, light, blur,
JPEG compression, erasing, mixup."""
from __future__ import annotations

import keras
import numpy as np

from core.preprocess import DEBLOCK_GATE, JPEG_BLOCK
from core.runtime import tensorflow
from training.config import Augment


LOOSE_MAX = 1.8   # the loosest framing a training face is shown at, relative to the model's crop


def wide_side(size: int) -> int:
    """Side of the stored wide crops, with the model's own crop a whole number of pixels inside."""
    return size + 2 * round(size * (LOOSE_MAX - 1) / 2)


def make_loose_cropper(prob: float, size: int, seed: int):
    """(wide crops, has-surroundings flags, labels) -> (size x size faces, labels): the model's own
    framing, or with probability `prob` (faces with real surroundings only) a looser one, up to LOOSE_MAX."""
    tf = tensorflow()
    gen = tf.random.Generator.from_seed(seed + 5)

    def crop(x, context, y):
        n = tf.shape(x)[0]
        side = tf.cast(tf.shape(x)[1], tf.float32)
        loose = (gen.uniform([n]) < prob) & context
        scale = tf.where(loose, gen.uniform([n], 1.0, side / size), tf.ones([n]))
        half = (size * scale - 1) / 2 / (side - 1)     # sample on pixel centres: scale 1 is an exact cut
        boxes = tf.stack([0.5 - half, 0.5 - half, 0.5 + half, 0.5 + half], axis=1)
        return tf.image.crop_and_resize(x, boxes, tf.range(n), [size, size]), y

    return crop


JPEG_QUALITY = (10, 50)   # the range of --jpeg's compression (bench.conditions' jpeg10 is its hardest)
TIGHT_MIN = 0.62   # the tightest framing: this fraction of the model's crop side (eyes to chin)


def tight_boxes(t, jitter):
    """Crop boxes [y1, x1, y2, x2] (0..1 of the model's crop) of side `t`, lowered as they tighten so that
    the mouth and chin stay in and the forehead goes first (at t = 2/3: the eyes-to-chin area of a face
    box, `bench.conditions.tight`); `jitter` in -1..1 moves each sideways within its margin."""
    tf = tensorflow()
    cy = 0.5 + (1.0 - t) * 0.375
    cx = 0.5 + jitter * (1.0 - t) * 0.25
    return tf.stack([cy - t / 2, cx - t / 2, cy + t / 2, cx + t / 2], axis=1)


def make_tight_cropper(prob: float, size: int, seed: int):
    """(faces, targets) -> the same with probability `prob` framed tighter, down to TIGHT_MIN of the side."""
    tf = tensorflow()
    gen = tf.random.Generator.from_seed(seed + 6)

    def crop(x, y):
        n = tf.shape(x)[0]
        tighter = gen.uniform([n]) < prob
        t = tf.where(tighter, gen.uniform([n], TIGHT_MIN, 0.95), tf.ones([n]))
        boxes = tight_boxes(t, gen.uniform([n], -1.0, 1.0))
        return tf.image.crop_and_resize(x, boxes, tf.range(n), [size, size]), y

    return crop


def blockiness(img):
    """core.preprocess.jpeg_blockiness in TensorFlow, for an (H, W, C) image whose JPEG grid starts at its corner."""
    tf = tensorflow()
    gray = img[:, :, 0] if img.shape[-1] == 1 else tf.image.rgb_to_grayscale(img)[:, :, 0]
    gray = tf.round(tf.cast(gray, tf.float32))
    h, w = tf.shape(gray)[0], tf.shape(gray)[1]

    def measure():
        dx, dy = tf.abs(gray[:, 1:] - gray[:, :-1]), tf.abs(gray[1:] - gray[:-1])
        on_x = tf.cast(tf.range(1, w) % JPEG_BLOCK == 0, tf.float32)[None, :]   # column j and j+1 in different blocks
        on_y = tf.cast(tf.range(1, h) % JPEG_BLOCK == 0, tf.float32)[:, None]

        def mean(d, m):
            m = m * tf.ones_like(d)
            return tf.reduce_sum(d * m) / tf.reduce_sum(m)

        across = mean(dx, on_x) + mean(dy, on_y)
        within = mean(dx, 1 - on_x) + mean(dy, 1 - on_y)
        return across / (within + 1e-3)

    return tf.cond(tf.minimum(h, w) < 2 * JPEG_BLOCK, lambda: tf.constant(0.0), measure)


def gaussian_blur(img, sigma: float):
    """cv2.GaussianBlur(img, (0, 0), sigma) for an (H, W, C) float image: the same kernel and border."""
    tf = tensorflow()
    radius = max(1, int(round(sigma * 3)))          # OpenCV's kernel for 8-bit images: 2 * round(3 sigma) + 1 taps
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps = tf.constant(taps / taps.sum(), tf.float32)
    c = img.shape[-1]
    x = tf.pad(img[None], [[0, 0], [radius, radius], [radius, radius], [0, 0]], mode="REFLECT")  # BORDER_REFLECT_101
    x = tf.nn.depthwise_conv2d(x, tf.tile(tf.reshape(taps, [1, -1, 1, 1]), [1, 1, c, 1]), [1, 1, 1, 1], "VALID")
    x = tf.nn.depthwise_conv2d(x, tf.tile(tf.reshape(taps, [-1, 1, 1, 1]), [1, 1, c, 1]), [1, 1, 1, 1], "VALID")
    return x[0]


def make_augmenter(cfg: Augment, size: int, seed: int):
    """A function (images float32 0..255, one-hot labels) -> augmented batch, for Dataset.map."""
    tf = tensorflow()
    geo = []
    if cfg.flip:
        geo.append(keras.layers.RandomFlip("horizontal", seed=seed, dtype="float32"))
    if cfg.rotate:
        geo.append(keras.layers.RandomRotation(cfg.rotate / 360.0, fill_mode="reflect", seed=seed + 1, dtype="float32"))
    if cfg.zoom:
        geo.append(keras.layers.RandomZoom((-cfg.zoom, cfg.zoom), fill_mode="reflect", seed=seed + 2, dtype="float32"))
    if cfg.shift:
        geo.append(keras.layers.RandomTranslation(cfg.shift, cfg.shift, fill_mode="reflect", seed=seed + 3, dtype="float32"))
    gen = tf.random.Generator.from_seed(seed + 4)

    def light(x):
        if not cfg.brightness_contrast:
            return x
        s = cfg.brightness_contrast
        n = tf.shape(x)[0]
        mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
        contrast = gen.uniform([n, 1, 1, 1], 1 - s, 1 + s)
        bright = gen.uniform([n, 1, 1, 1], -s * 80, s * 80)
        gamma = tf.exp(gen.uniform([n, 1, 1, 1], -s, s))
        x = 255.0 * tf.pow(tf.clip_by_value(x, 0, 255) / 255.0, gamma)
        return tf.clip_by_value((x - mean) * contrast + mean + bright, 0, 255)

    def blur(x):
        if not cfg.blur:
            return x
        factor = gen.uniform([], 0.25, 0.75)
        s = tf.cast(tf.round(size * factor), tf.int32)
        down = tf.image.resize(x, tf.stack([s, s]), method="area")
        up = tf.image.resize(down, [size, size], method="bilinear")
        mask = tf.cast(gen.uniform([tf.shape(x)[0], 1, 1, 1]) < cfg.blur, x.dtype)
        return mask * up + (1 - mask) * x

    def jpeg(x):
        if not cfg.jpeg:
            return x
        n = tf.shape(x)[0]
        quality = tf.cast(gen.uniform([n], JPEG_QUALITY[0], JPEG_QUALITY[1] + 1), tf.int32)
        apply = gen.uniform([n]) < cfg.jpeg

        sides = tf.cast(tf.round(size * gen.uniform([n], cfg.jpeg_scale, 1.0)), tf.int32)

        def compress(img, q, side):
            small = tf.image.resize(img, tf.stack([side, side]), method="area") if cfg.jpeg_scale < 1 else img
            small = tf.cast(tf.clip_by_value(tf.round(small), 0, 255), tf.uint8)
            out = tf.cast(tf.image.adjust_jpeg_quality(small, q), tf.float32)
            blocky = blockiness(out) >= DEBLOCK_GATE if cfg.deblock else None   # on the grid it was coded on
            out = tf.image.resize(out, [size, size], method="bilinear") if cfg.jpeg_scale < 1 else out
            if cfg.deblock:   # as core.preprocess.crop_faces serves it: after the resize, where the gate fires
                out = tf.cond(blocky, lambda: gaussian_blur(out, cfg.deblock), lambda: out)
            return out

        def one(args):
            img, q, on, side = args
            out = tf.cond(on, lambda: compress(img, q, side),
                          lambda: tf.clip_by_value(tf.round(img), 0, 255))
            return tf.ensure_shape(out, img.shape)

        return tf.map_fn(one, (x, quality, apply, sides), fn_output_signature=tf.float32)

    def erase(x):
        if not cfg.erasing:
            return x
        n = tf.shape(x)[0]
        h = gen.uniform([n, 1, 1, 1], 0.1, 0.4) * size
        w = gen.uniform([n, 1, 1, 1], 0.1, 0.4) * size
        cy = gen.uniform([n, 1, 1, 1], 0, size)
        cx = gen.uniform([n, 1, 1, 1], 0, size)
        r = tf.reshape(tf.range(size, dtype=tf.float32), [1, size, 1, 1])
        c = tf.reshape(tf.range(size, dtype=tf.float32), [1, 1, size, 1])
        box = tf.cast((tf.abs(r - cy) < h / 2) & (tf.abs(c - cx) < w / 2), x.dtype)
        apply = tf.cast(gen.uniform([n, 1, 1, 1]) < cfg.erasing, x.dtype)
        noise = gen.uniform(tf.shape(x), 0, 255)
        m = box * apply
        return x * (1 - m) + noise * m

    def mixup(x, y):
        if not cfg.mixup:
            return x, y
        n = tf.shape(x)[0]
        lam = tf.random.stateless_gamma([n], seed=gen.make_seeds(1)[:, 0], alpha=cfg.mixup)
        lam2 = tf.random.stateless_gamma([n], seed=gen.make_seeds(1)[:, 0], alpha=cfg.mixup)
        lam = lam / (lam + lam2)
        lam = tf.maximum(lam, 1 - lam)
        perm = tf.random.shuffle(tf.range(n))
        lx = tf.reshape(lam, [n, 1, 1, 1])
        ly = tf.reshape(lam, [n, 1])
        return x * lx + tf.gather(x, perm) * (1 - lx), y * ly + tf.gather(y, perm) * (1 - ly)

    def augment(x, y):
        for layer in geo:
            x = layer(x, training=True)
        x = jpeg(light(blur(x)))
        x = erase(x)
        x, y = mixup(x, y)
        return x, y

    return augment
