"""The stream's detection schedule on a video made from real GENKI-4K photos (pasted on textured
backgrounds and moved): a fine whole-frame search every N frames, one when a face is lost, a new
face found within N frames."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from bench.synthetic import default_genki, face_photos, paste, texture
from core.detect import LIVE_DETECTOR, FaceDetector
from core.pipeline import Pipeline
from core.tracking import FaceFollower, iou

N = 6   # full_every in these tests


@pytest.fixture(scope="module")
def photos():
    genki = default_genki()
    if not (genki / "files").is_dir():
        pytest.skip(f"{genki} is absent (shared datasets live beside the repo)")
    return face_photos(genki, 4, seed=1)


def moving_clip(photos, frames: int, second_from: int | None = None, gone_from: int | None = None):
    """(frame, true boxes): a 150 px face drifting right; a second, 110 px face from `second_from`;
    the first face gone from `gone_from` (only the background, or the second face, is left)."""
    background = texture(np.random.default_rng(5))
    out = []
    for k in range(frames):
        frame, boxes = background.copy(), []
        if gone_from is None or k < gone_from:
            boxes.append(paste(frame, photos[0], (60 + 2 * k, 120, 150, 150)))
        if second_from is not None and k >= second_from:
            boxes.append(paste(frame, photos[1], (420, 200 + k, 110, 110)))
        out.append((frame, boxes))
    return out


@pytest.fixture(scope="module")
def pipeline(smile_classifier):
    return Pipeline(smile_classifier, FaceDetector(replace(LIVE_DETECTOR, full_every=N)))


def test_the_whole_frame_is_searched_every_n_frames(pipeline, photos):
    follower = FaceFollower(pipeline)
    searches, found = [], 0
    for frame, boxes in moving_clip(photos, 4 * N + 1):
        faces = follower(frame)
        searches.append(follower.search)
        found += any(iou(f.face.box, boxes[0]) >= 0.3 for f in faces)
    assert searches[0] == "coarse"           # nothing tracked yet
    whole = [i for i, s in enumerate(searches[1:], 1) if s != "near"]
    assert whole == list(range(N - 1, len(searches), N)), searches
    every = pipeline.detector.config.fine_every
    assert every > 1 and [searches[i] for i in whole] == ["fine" if k % every == every - 1 else "coarse"
                                                          for k in range(len(whole))], searches
    assert found == len(searches), "the drifting face is followed in every frame"


def test_a_lost_face_triggers_a_whole_frame_search(pipeline, photos):
    follower = FaceFollower(pipeline)
    clip = moving_clip(photos, 10, gone_from=3)
    searches = []
    for frame, _ in clip:
        faces = follower(frame)
        searches.append(follower.search)
    assert searches[1:3] == ["near", "near"]
    assert searches[3] == "fine", f"the frame the face left must be searched whole: {searches}"
    assert searches[4] == "near", "a face already coasting does not trigger another"
    assert faces == [], "the lost face ends after max_missed frames"


def test_a_new_face_is_found_within_n_frames(pipeline, photos):
    follower = FaceFollower(pipeline)
    enter = 2
    found_at = None
    for k, (frame, boxes) in enumerate(moving_clip(photos, enter + N + 1, second_from=enter)):
        faces = follower(frame)
        if k >= enter and found_at is None and any(iou(f.face.box, boxes[1]) >= 0.3 for f in faces):
            found_at = k
    assert found_at is not None and found_at - enter < N, f"entered at frame {enter}, found at {found_at}"
    ids = [next(f.track for f in faces if iou(f.face.box, b) >= 0.3) for b in boxes]
    assert ids[0] != ids[1], "each face has its own track"


def test_a_small_face_is_found_and_followed(pipeline, photos):
    """A 64 px face: below the coarse search's smallest face, found by the fine one, then followed."""
    assert pipeline.detector.detect(moving_clip_small(photos, 1)[0][0]) == []
    follower = FaceFollower(pipeline)
    hits = []
    for frame, boxes in moving_clip_small(photos, 3 * N):
        hits.append(any(iou(f.face.box, boxes[0]) >= 0.3 for f in follower(frame)))
    assert all(hits[N:]), hits


def moving_clip_small(photos, frames: int):
    background = texture(np.random.default_rng(6))
    out = []
    for k in range(frames):
        frame = background.copy()
        out.append((frame, [paste(frame, photos[2], (200 + k, 150, 64, 64))]))
    return out
