"""Face tracks: IoU matching, smoothed probabilities, coasting over missed detections, and the
follower that runs the detector only when needed (real frames, real model)."""
import numpy as np
import pytest

from core.detect import LIVE_DETECTOR, FaceDetector
from core.pipeline import Pipeline
from core.tracking import FaceFollower, FaceTracker, Track, TrackingConfig, iou


def test_iou():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (20, 20, 5, 5)) == 0.0
    assert iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(50 / 150)
    assert iou((0, 0, 0, 0), (0, 0, 0, 0)) == 0.0


def test_tracks_keep_their_ids_while_faces_move_a_little():
    tracker = FaceTracker(TrackingConfig(box_smoothing=0.0))
    p = np.array([[0.9, 0.1], [0.2, 0.8]])
    first = tracker.update([(100, 100, 80, 80), (400, 120, 90, 90)], p)
    ids = [t.id for t in first]
    assert len(set(ids)) == 2
    # the faces move a few pixels and come back in the other order
    second = tracker.update([(405, 124, 90, 90), (104, 98, 80, 80)], p[::-1])
    assert [t.id for t in second] == ids[::-1]
    assert second[0].box == (405, 124, 90, 90)
    assert second[1].hits == 2
    # a face far away is a new track; the ones that vanished end
    third = tracker.update([(700, 300, 60, 60)], p[:1])
    assert third[0].id not in ids and len(tracker.tracks) == 1


def test_smoothing_stops_a_single_unsure_frame_from_flipping_the_probabilities():
    tracker = FaceTracker(TrackingConfig(smoothing=0.6, smoothing_speed=2.0))
    box = (50, 50, 100, 100)
    for _ in range(10):
        tracker.update([box], np.array([[0.9, 0.1]]))
    t = tracker.update([box], np.array([[0.4, 0.6]]))[0]   # one odd, unsure frame: a change of 0.5
    w = 0.6 ** (1 + 2.0 * 0.5)
    assert t.probs[1] < 0.5 and t.probs[1] == pytest.approx(w * 0.1 + (1 - w) * 0.6)
    for _ in range(8):                                      # a lasting change gets through
        t = tracker.update([box], np.array([[0.1, 0.9]]))[0]
    assert t.probs[1] > 0.85


def test_a_confident_change_shows_at_once_a_small_one_is_smoothed():
    box = (50, 50, 100, 100)
    for speed, flips in ((2.0, True), (0.0, False)):
        tracker = FaceTracker(TrackingConfig(smoothing=0.6, smoothing_speed=speed))
        for _ in range(5):
            tracker.update([box], np.array([[0.95, 0.05]]))
        t = tracker.update([box], np.array([[0.05, 0.95]]))[0]
        assert (t.probs[1] > 0.5) == flips, (speed, t.probs)
    tracker = FaceTracker(TrackingConfig(smoothing=0.6, smoothing_speed=2.0))
    tracker.update([box], np.array([[0.6, 0.4]]))
    t = tracker.update([box], np.array([[0.5, 0.5]]))[0]    # a small change keeps nearly all the smoothing
    w = 0.6 ** 1.2
    assert t.probs[1] == pytest.approx(w * 0.4 + (1 - w) * 0.5)


def test_smoothing_follows_time_when_frame_times_are_known():
    cfg = TrackingConfig(smoothing=0.6, smoothing_fps=15.0, smoothing_speed=0.0)
    box = (0, 0, 50, 50)
    at_rate = FaceTracker(cfg)
    at_rate.update([box], np.array([[1.0, 0.0]]))
    t = at_rate.update([box], np.array([[0.0, 1.0]]), dt=1 / 15)[0]
    assert t.probs[1] == pytest.approx(0.4)                 # one frame at the reference rate
    slow = FaceTracker(cfg)
    slow.update([box], np.array([[1.0, 0.0]]))
    t = slow.update([box], np.array([[0.0, 1.0]]), dt=1.0)[0]
    assert t.probs[1] > 0.99, "a frame a second later is barely mixed with the old one"


def test_no_smoothing_passes_probabilities_through():
    tracker = FaceTracker(TrackingConfig(smoothing=0.0))
    tracker.update([(0, 0, 50, 50)], np.array([[0.9, 0.1]]))
    t = tracker.update([(0, 0, 50, 50)], np.array([[0.3, 0.7]]))[0]
    np.testing.assert_allclose(t.probs, [0.3, 0.7])


def test_a_missed_face_coasts_for_max_missed_detections_then_ends():
    tracker = FaceTracker(TrackingConfig(max_missed=2))
    box = (10, 10, 40, 40)
    tracker.update([box], np.array([[0.5, 0.5]]))
    tid = tracker.update(tracker.coast([box]), np.array([[0.5, 0.5]]))[0].id    # seen twice
    for _ in range(2):
        boxes = tracker.coast([])           # the detector found nothing
        assert boxes == [box]
        tracks = tracker.update(boxes, np.array([[0.5, 0.5]]), fresh=0)
        assert tracks[0].id == tid and tracks[0].missed > 0
    assert tracker.coast([]) == []          # third miss: the face is gone
    assert tracker.update([], np.zeros((0, 2)), fresh=0) == [] and tracker.tracks == []


def test_a_box_seen_in_one_frame_only_is_not_held_when_the_detector_misses_it():
    """A one-frame false detection (a patch of background) ends at once instead of showing for max_missed
    more frames; a face seen in hold_after frames is held."""
    tracker = FaceTracker(TrackingConfig(max_missed=2, hold_after=2))
    tracker.update([(10, 10, 40, 40)], np.array([[0.5, 0.5]]))
    assert tracker.coast([]) == []
    assert tracker.update([], np.zeros((0, 2)), fresh=0) == []
    held = FaceTracker(TrackingConfig(max_missed=2, hold_after=1))
    held.update([(10, 10, 40, 40)], np.array([[0.5, 0.5]]))
    assert held.coast([]) == [(10, 10, 40, 40)]


def test_a_found_face_is_no_longer_missed():
    tracker = FaceTracker(TrackingConfig(max_missed=2, box_smoothing=0.0))
    tracker.update([(10, 10, 40, 40)], np.array([[0.5, 0.5]]))
    tracker.update([(10, 10, 40, 40)], np.array([[0.5, 0.5]]))
    tracker.update(tracker.coast([]), np.array([[0.5, 0.5]]), fresh=0)
    assert tracker.tracks[0].missed == 1
    t = tracker.update(tracker.coast([(12, 11, 40, 40)]), np.array([[0.5, 0.5]]), fresh=1)
    assert len(t) == 1 and t[0].missed == 0 and t[0].box == (12, 11, 40, 40)


@pytest.fixture(scope="module")
def pipeline(smile_classifier):
    return Pipeline(smile_classifier, FaceDetector())


def test_follower_searches_near_the_face_and_keeps_one_track_on_a_real_video(smile_classifier, smile_frames):
    follower = FaceFollower(Pipeline(smile_classifier, FaceDetector(LIVE_DETECTOR)))
    searches, tracks = [], set()
    for frame in smile_frames:
        faces = follower(frame)
        searches.append(follower.search)
        assert faces, "the person in smile_video.mp4 is in every frame"
        tracks.add(faces[0].track)
        assert 0.0 <= faces[0].face.probs.min() and faces[0].face.probs.sum() == pytest.approx(1.0, abs=1e-4)
    assert len(tracks) == 1, "the one face must keep one track id"
    n, every = len(smile_frames), LIVE_DETECTOR.full_every
    assert searches.count("near") >= n - n // every - 2, searches
    assert searches.count("fine") <= n // every + 1, searches


def test_follower_with_no_face_searches_the_whole_frame(pipeline):
    follower = FaceFollower(pipeline)
    blank = np.full((240, 320, 3), 128, np.uint8)
    for _ in range(3):
        assert follower(blank) == []
        assert follower.detected


def test_follower_applies_the_pipeline_threshold(smile_classifier, smile_frames):
    frame = smile_frames[0]
    low = FaceFollower(Pipeline(smile_classifier, FaceDetector(), threshold=0.0))(frame)
    high = FaceFollower(Pipeline(smile_classifier, FaceDetector(), threshold=1.0001))(frame)
    assert low[0].face.label == "smile" and high[0].face.label == "no smile"


def test_label_hysteresis_holds_a_shown_class_against_a_narrow_flickering_lead():
    """Seven classes: a challenger that tops the shown class by less than label_margin, or not for
    label_frames frames in a row, does not take the label; a clear lead or a steady one does."""
    cfg = TrackingConfig(label_margin=0.15, label_frames=4)
    track = Track(0, (0, 0, 10, 10), np.zeros(7))

    def show(probs: dict[int, float]) -> int:
        track.probs = np.array([probs.get(i, 0.0) for i in range(7)])
        return track.hold_label(int(np.argmax(track.probs)), cfg)

    assert show({4: 0.5, 5: 0.3}) == 4                      # neutral shown first
    flicker = [{4: 0.40, 5: 0.45}, {4: 0.45, 5: 0.40}] * 4  # sad leads by 0.05 every other frame
    assert [show(p) for p in flicker] == [4] * 8
    assert [show({4: 0.40, 5: 0.45}) for _ in range(4)] == [4, 4, 4, 5]   # a steady lead: after 4 frames
    assert show({5: 0.2, 0: 0.6}) == 0                      # a clear lead (0.4 > 0.15): at once


@pytest.mark.parametrize("task, photo, label", [("expression", "neutral.jpg", "neutral"), ("smile", "happy.jpg", "smile")])
@pytest.mark.parametrize("spread", [True, False])
def test_a_stream_reads_one_view_a_frame_and_every_view_for_a_new_face(request, task, photo, label, spread):
    """On a still real face: the first frame of the face reads every view, later frames one view each in turn
    (spread_views: the face, its mirror, then each crop and its mirror),
    and the smoothed probabilities stay near the full test's, with the same label."""
    import cv2

    from core.preprocess import crop_faces
    from tests.conftest import EXPRESSIONS, need

    photo = cv2.cvtColor(cv2.imread(str(need(EXPRESSIONS / photo))), cv2.COLOR_BGR2RGB)
    frame = cv2.resize(photo, (640, round(640 * photo.shape[0] / photo.shape[1])))
    clf = request.getfixturevalue(f"{task}_classifier")
    assert clf.n_views == {"expression": 10, "smile": 2}[task]
    follower = FaceFollower(Pipeline(clf, FaceDetector(LIVE_DETECTOR)), TrackingConfig(spread_views=spread))
    for i in range(12):
        (face,) = follower(frame, t=i / 15)
        crop = crop_faces(frame, [follower.raw[0].box], clf.preprocess)
        full = clf.predict(crop)[0]
        want = full if i == 0 or not spread else clf.predict(crop, view=i)[0]
        np.testing.assert_allclose(follower.raw[0].probs, want, atol=1e-4)
        assert face.face.class_name == label == clf.task.class_names[int(full.argmax())]
    assert np.abs(face.face.probs - full).max() < 0.1
