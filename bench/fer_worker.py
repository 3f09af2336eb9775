"""Runs inside the `fer` package's own virtual environment (made by bench.peers), never in Grin's:
reads the frames from an .npy file (RGB, N x 480 x 640 x 3), prints `ready`, then for each frame
index read on stdin times `FER(mtcnn=False).detect_emotions` on it and prints one JSON line."""
from __future__ import annotations

import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main() -> int:
    import cv2
    import numpy as np
    from fer.fer import FER

    frames = np.load(sys.argv[1], mmap_mode="r")
    detector = FER(mtcnn=False)
    detector.detect_emotions(cv2.cvtColor(np.ascontiguousarray(frames[0]), cv2.COLOR_RGB2BGR))  # warm-up
    print("ready", flush=True)
    for line in sys.stdin:
        i = int(line)
        bgr = cv2.cvtColor(np.ascontiguousarray(frames[i]), cv2.COLOR_RGB2BGR)
        t0, c0 = time.perf_counter(), time.process_time()
        faces = detector.detect_emotions(bgr)
        ms, cpu = (time.perf_counter() - t0) * 1000, (time.process_time() - c0) * 1000
        print(json.dumps({"ms": ms, "cpu_ms": cpu, "boxes": [[int(v) for v in f["box"]] for f in faces],
                          "happy": [float(f["emotions"]["happy"]) for f in faces]}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
