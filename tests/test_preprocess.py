"""The one preprocessing path: crop geometry, padding, colour modes, shapes, determinism."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from core.preprocess import PreprocessConfig, crop_box, crop_faces, equalize, whole_image_box


@pytest.fixture
def image() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)


def test_crop_box_widens_around_the_box_centre():
    x0, y0, side = crop_box((10, 20, 50, 50), PreprocessConfig(widen=1.2))
    assert side == 60
    assert (x0, y0) == (5, 15)            # centre (35, 45) kept
    x0, y0, side = crop_box((10, 20, 40, 60), PreprocessConfig(widen=1.0))
    assert side == 60 and (x0, y0) == (0, 20)   # square on the longer side


def test_crop_box_shift_moves_the_centre_down():
    _, y_plain, _ = crop_box((0, 100, 50, 50), PreprocessConfig(widen=1.0))
    _, y_shift, _ = crop_box((0, 100, 50, 50), PreprocessConfig(widen=1.0, shift_y=0.1))
    assert y_shift - y_plain == 5


def test_inside_crop_at_native_size_is_the_exact_pixels(image):
    cfg = PreprocessConfig(input_size=32, color_mode="rgb", widen=1.0)
    out = crop_faces(image, [(10, 20, 32, 32)], cfg)
    assert out.shape == (1, 32, 32, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[0], image[20:52, 10:42])


def test_out_of_bounds_crop_is_padded_by_replicating_the_border(image):
    cfg = PreprocessConfig(input_size=32, color_mode="rgb", widen=1.0)
    out = crop_faces(image, [(-10, -6, 32, 32)], cfg)[0]
    want = np.pad(image[0:26, 0:22], ((6, 0), (10, 0), (0, 0)), mode="edge")
    np.testing.assert_array_equal(out, want)
    h, w = image.shape[:2]
    out = crop_faces(image, [(w - 20, h - 12, 32, 32)], cfg)[0]   # past the right and bottom edges
    want = np.pad(image[h - 12:, w - 20:], ((0, 20), (0, 12), (0, 0)), mode="edge")
    np.testing.assert_array_equal(out, want)


def test_a_box_entirely_outside_the_image_gives_a_blank_crop(image):
    out = crop_faces(image, [(1000, 1000, 40, 40)], PreprocessConfig(input_size=24, color_mode="gray"))
    assert out.shape == (1, 24, 24, 1) and not out.any()


def test_resizing_to_the_model_size(image):
    cfg = PreprocessConfig(input_size=48, color_mode="rgb", widen=1.0)
    out = crop_faces(image, [(20, 10, 96, 96), (0, 0, 12, 12)], cfg)   # shrink and enlarge
    assert out.shape == (2, 48, 48, 3)
    want = cv2.resize(image[10:106, 20:116], (48, 48), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(out[0], want)


def test_gray_mode_matches_opencv_luma(image):
    rgb = crop_faces(image, [(10, 10, 40, 40)], PreprocessConfig(input_size=40, color_mode="rgb", widen=1.0))
    gray = crop_faces(image, [(10, 10, 40, 40)], PreprocessConfig(input_size=40, color_mode="gray", widen=1.0))
    assert gray.shape == (1, 40, 40, 1)
    np.testing.assert_array_equal(gray[0, :, :, 0], cv2.cvtColor(rgb[0], cv2.COLOR_RGB2GRAY))


def test_grayscale_input_in_both_modes(image):
    gray_img = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    box = [(5, 5, 30, 30)]
    g = crop_faces(gray_img, box, PreprocessConfig(input_size=30, color_mode="gray", widen=1.0))
    c = crop_faces(gray_img, box, PreprocessConfig(input_size=30, color_mode="rgb", widen=1.0))
    assert g.shape == (1, 30, 30, 1) and c.shape == (1, 30, 30, 3)
    np.testing.assert_array_equal(g[0, :, :, 0], gray_img[5:35, 5:35])
    for ch in range(3):
        np.testing.assert_array_equal(c[0, :, :, ch], gray_img[5:35, 5:35])


def test_no_boxes_gives_an_empty_batch_of_the_right_shape(image):
    for cfg in (PreprocessConfig(64, "gray"), PreprocessConfig(48, "rgb")):
        out = crop_faces(image, [], cfg)
        assert out.shape == (0, *cfg.input_shape) and out.dtype == np.uint8


@pytest.mark.parametrize("size", [48, 64, 100, 181])
def test_whole_image_box_round_trips_to_the_whole_square_image(size):
    cfg = PreprocessConfig(input_size=size, color_mode="rgb", widen=1.2)
    img = np.random.default_rng(size).integers(0, 256, (size, size, 3), dtype=np.uint8)
    x0, y0, side = crop_box(whole_image_box(img.shape, cfg), cfg)
    assert abs(x0) <= 1 and abs(y0) <= 1 and abs(side - size) <= 1
    if size == 48:   # FER-2013's crops go through unchanged
        np.testing.assert_array_equal(crop_faces(img, [whole_image_box(img.shape, cfg)], cfg)[0], img)


def test_whole_image_box_of_a_non_square_image_covers_the_long_side():
    cfg = PreprocessConfig(input_size=64, color_mode="gray", widen=1.2)
    x0, y0, side = crop_box(whole_image_box((80, 120), cfg), cfg)
    assert abs(side - 120) <= 1 and abs(x0) <= 1 and abs(y0 + 20) <= 1


def test_crops_are_deterministic_and_leave_the_image_alone(image):
    before = image.copy()
    cfg = PreprocessConfig(input_size=64, color_mode="gray", widen=1.2)
    boxes = [(30, 20, 70, 70), (-5, 90, 50, 50)]
    a, b = crop_faces(image, boxes, cfg), crop_faces(image.copy(), boxes, cfg)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(image, before)


def test_config_round_trips_through_a_dict():
    cfg = PreprocessConfig(input_size=48, color_mode="rgb", widen=1.3, shift_y=0.05, equalize="clahe")
    assert PreprocessConfig.from_dict({**cfg.to_dict(), "unknown": 1}) == cfg
    assert cfg.input_shape == (48, 48, 3) and PreprocessConfig().channels == 1


def test_clahe_spreads_the_levels_of_a_dark_face_and_none_leaves_the_crop_alone():
    """A dark, flat crop (levels 10-40) comes out of CLAHE brighter and with a wider spread; "none" is the plain
    crop."""
    rng = np.random.default_rng(1)
    dark = (10 + 30 * np.linspace(0, 1, 64)[None, :, None] * np.ones((64, 1, 3))
            + rng.normal(0, 2, (64, 64, 3))).clip(0, 255).astype(np.uint8)
    plain = crop_faces(dark, [(0, 0, 64, 64)], PreprocessConfig(widen=1.0))
    again = crop_faces(dark, [(0, 0, 64, 64)], PreprocessConfig(widen=1.0, equalize="none"))
    lifted = crop_faces(dark, [(0, 0, 64, 64)], PreprocessConfig(widen=1.0, equalize="clahe"))
    np.testing.assert_array_equal(plain, again)
    assert lifted.shape == plain.shape and lifted.dtype == np.uint8
    assert lifted.mean() > 1.5 * plain.mean() and int(np.ptp(lifted)) > 1.5 * int(np.ptp(plain))
    assert lifted.std() > 1.25 * plain.std()
    rgb = crop_faces(dark, [(0, 0, 64, 64)], PreprocessConfig(input_size=48, color_mode="rgb", widen=1.0,
                                                              equalize="clahe"))
    assert rgb.shape == (1, 48, 48, 3) and rgb.mean() > 1.5 * dark.mean() and rgb.std() > 1.25 * dark.std()


def test_an_unknown_equalisation_is_refused():
    with pytest.raises(ValueError, match="equalize must be one of .*not 'magic'"):
        equalize(np.zeros((8, 8, 1), np.uint8), "magic")
