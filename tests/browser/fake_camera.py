"""A fake webcam for Chromium: a looping .y4m made from smile_video.mp4 with long neutral and smiling parts."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np

WIDTH, HEIGHT, FPS = 640, 480, 15
NEUTRAL_FRAMES = range(0, 13)     # source frames where the face is neutral (see ../shared/media/README.md)
SMILE_FRAMES = range(26, 61)      # source frames where the face smiles with teeth


@dataclass(frozen=True)
class FakeCamera:
    """The file Chromium loops and when, within each loop, the face is neutral or smiling."""

    path: Path
    neutral_s: float
    smile_s: float

    @property
    def period_s(self) -> float:
        return self.neutral_s + self.smile_s

    def expected(self, t: float) -> str:
        """The true label at `t` seconds after the start of a loop."""
        return "no smile" if (t % self.period_s) < self.neutral_s else "smile"


def _ping_pong(frames: list[np.ndarray], n: int) -> list[np.ndarray]:
    """n frames going back and forth through `frames` (natural motion, no jump)."""
    cycle = frames + frames[-2:0:-1]
    return [cycle[i % len(cycle)] for i in range(n)]


def _letterbox(rgb: np.ndarray) -> np.ndarray:
    """Fit into WIDTH x HEIGHT keeping the aspect ratio, on a black background."""
    h, w = rgb.shape[:2]
    s = min(WIDTH / w, HEIGHT / h)
    small = cv2.resize(rgb, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
    out = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    y, x = (HEIGHT - small.shape[0]) // 2, (WIDTH - small.shape[1]) // 2
    out[y:y + small.shape[0], x:x + small.shape[1]] = small
    return out


def write_fake_camera(video: Path, out: Path, neutral_s: float = 4.0, smile_s: float = 4.0) -> FakeCamera:
    """Write a YUV4MPEG2 file (I420, 640x480, 15 fps): `neutral_s` of neutral face, then `smile_s` of smiling."""
    with av.open(str(video)) as container:
        src = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    neutral = _ping_pong([_letterbox(src[i]) for i in NEUTRAL_FRAMES], round(neutral_s * FPS))
    smile = _ping_pong([_letterbox(src[i]) for i in SMILE_FRAMES], round(smile_s * FPS))
    write_y4m(neutral + smile, out)
    return FakeCamera(out, len(neutral) / FPS, len(smile) / FPS)


def write_y4m(frames: list[np.ndarray], out: Path) -> Path:
    """A YUV4MPEG2 file (I420, FPS) of WIDTH x HEIGHT RGB frames, as Chromium's fake camera plays them."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "wb") as f:
        f.write(f"YUV4MPEG2 W{WIDTH} H{HEIGHT} F{FPS}:1 Ip A1:1 C420jpeg\n".encode())
        for rgb in frames:
            f.write(b"FRAME\n")
            f.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420).tobytes())
    return out
