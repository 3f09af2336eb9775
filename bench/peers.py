"""Grin against the `fer` package (Haar + its TFLite mini-Xception) on the same frames, interleaved:
`python -m bench.peers --json out.json`.

The frames are bench.synthetic's seeded GENKI-4K faces (60-200 px) on textured 640x480 backgrounds.
`fer` runs in its own virtual environment (made on demand, never a dependency of Grin) through
bench/fer_worker.py; each frame goes to `fer`, then through Grin's tracked stream and its still-frame
pipeline, so a busy machine slows all three alike. Each side times only its own call."""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from bench import MediaError, Stopwatch, summarize
from bench.synthetic import default_genki, found
from core.fileio import write_json_atomic
from core.model import ModelError
from core.portable import portable_path
from core.runtime import quiet_command

REPO = Path(__file__).resolve().parents[1]
FER_VERSION = "25.10.3"
DEFAULT_VENV = REPO / ".cache" / "fer-venv"
TARGET_RATIO = 5.0


class PeerUnavailable(RuntimeError):
    """The `fer` package could not be installed or started."""


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def ensure_fer(venv: Path, install: bool = True) -> Path:
    """The python of a virtual environment with `fer` installed, made (minutes) when missing."""
    py = venv_python(venv)
    probe = [str(py), "-c", "import fer"]
    if py.is_file() and subprocess.run(probe, capture_output=True).returncode == 0:
        return py
    if not install:
        raise PeerUnavailable(f"{venv} has no `fer` package (run without --no-install to make it)")
    print(f"making {portable_path(venv)} with fer=={FER_VERSION} (once; minutes)", file=sys.stderr)
    steps = [[sys.executable, "-m", "venv", str(venv)],
             [str(py), "-m", "pip", "install", "--quiet", f"fer=={FER_VERSION}"]]
    for cmd in steps:
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise PeerUnavailable(f"could not install fer ({' '.join(cmd[-2:])}): {' / '.join(tail)}")
    if subprocess.run(probe, capture_output=True).returncode:
        raise PeerUnavailable(f"fer=={FER_VERSION} installed in {venv} but does not import")
    return py


class FerWorker:
    """bench/fer_worker.py in the peer's environment, answering one frame at a time."""

    def __init__(self, python: Path, frames_file: Path):
        self.proc = subprocess.Popen([str(python), str(REPO / "bench" / "fer_worker.py"), str(frames_file)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        if self.proc.stdout.readline().strip() != "ready":
            self.proc.kill()
            raise PeerUnavailable(f"fer did not start: {self.proc.stderr.read()[-500:]}")

    def __call__(self, i: int) -> dict:
        self.proc.stdin.write(f"{i}\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise PeerUnavailable(f"fer stopped: {self.proc.stderr.read()[-500:]}")
        return json.loads(line)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def compare(frames: list[np.ndarray], truth: list[list], python: Path, model: Path) -> dict:
    """Per-frame ms and faces found for fer, Grin's tracked stream and Grin's still-frame pipeline."""
    from core.detect import LIVE_DETECTOR, FaceDetector
    from core.model import Classifier
    from core.pipeline import Pipeline
    from bench.video import VIDEO_FPS
    from core.tracking import FaceFollower

    clf = Classifier(model)
    det = FaceDetector(LIVE_DETECTOR)
    still, follower = Pipeline(clf, det), FaceFollower(Pipeline(clf, det))
    sides = ("fer", "grin_tracked", "grin_still")
    watch = Stopwatch(*sides)
    ms, cpu = watch.ms, watch.cpu
    hits = {k: 0 for k in sides}
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / "frames.npy"
        np.save(file, np.stack(frames))
        fer = FerWorker(python, file)
        try:
            for i, frame in enumerate(frames):
                r = fer(i)
                boxes = {"fer": [tuple(b) for b in r["boxes"]]}
                watch.record("fer", r["ms"], r["cpu_ms"])
                for side, call in (("grin_tracked", lambda: [t.face for t in follower(frame, t=i / VIDEO_FPS)]),
                                   ("grin_still", lambda: still(frame))):
                    boxes[side] = [f.box for f in watch(side, call)]
                for side in sides:
                    hits[side] += all(found(b, boxes[side]) for b in truth[i])
        finally:
            fer.close()
    n = len(frames)
    out = {side: {"ms": summarize(ms[side]), "cpu_ms_median": round(float(np.median(cpu[side])), 3),
                  "found_share": round(hits[side] / n, 4)} for side in sides}
    fer_median = out["fer"]["ms"]["median"]
    return {
        "frames": n, **out,
        "ratio_median": {"tracked": round(fer_median / out["grin_tracked"]["ms"]["median"], 2),
                         "still": round(fer_median / out["grin_still"]["ms"]["median"], 2)},
        "target": {"ratio_median": TARGET_RATIO,
                   "met": fer_median / out["grin_tracked"]["ms"]["median"] >= TARGET_RATIO
                   and out["grin_tracked"]["found_share"] >= out["fer"]["found_share"]},
    }


def summary(r: dict) -> str:
    lines = [f"{r['frames']} synthetic 640x480 frames, interleaved"]
    names = {"fer": f"fer {FER_VERSION}", "grin_tracked": "Grin (tracked stream)", "grin_still": "Grin (still frames)"}
    for side, name in names.items():
        s = r[side]
        lines.append(f"{name:>22}: median {s['ms']['median']:.1f} ms, mean {s['ms']['mean']:.1f}, p95 "
                     f"{s['ms']['p95']:.1f}; face found in {s['found_share']:.1%} of frames")
    lines.append(f"fer / Grin median: {r['ratio_median']['tracked']:.1f}x (tracked), {r['ratio_median']['still']:.1f}x "
                 f"(still frames); target {r['target']['ratio_median']:.0f}x with as many faces found: "
                 f"{'met' if r['target']['met'] else 'NOT met'}")
    return "\n".join(lines)


def main(argv=None) -> int:
    quiet_command(argv)
    p = argparse.ArgumentParser(prog="python -m bench.peers", description=__doc__.splitlines()[0])
    p.add_argument("--json", required=True, help="write the figures here")
    p.add_argument("--model", default=str(REPO / "models" / "smile"), help="Grin's model folder")
    p.add_argument("--genki", default=str(default_genki()), help="GENKI-4K folder (the faces of the frames)")
    p.add_argument("--frames", type=int, default=200, help="number of frames")
    p.add_argument("--venv", default=str(DEFAULT_VENV), help="the peer's virtual environment (made when missing)")
    p.add_argument("--no-install", action="store_true", help="skip, rather than install fer, when the venv lacks it")
    p.add_argument("--verbose", action="store_true", help="also show TensorFlow's own log lines and warnings")
    args = p.parse_args(argv)
    if args.frames < 1:
        print("error: --frames must be at least 1", file=sys.stderr)
        return 2
    try:
        if not (Path(args.genki) / "files").is_dir():
            raise MediaError(f"{args.genki}/files is missing: pass GENKI-4K's folder with --genki")
        python = ensure_fer(Path(args.venv), install=not args.no_install)
        from bench.video import synthetic

        frames, truth = synthetic(args.genki, args.frames)
        result = compare(frames, truth, python, Path(args.model))
    except (MediaError, ModelError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except PeerUnavailable as exc:
        print(f"skipped: {exc}", file=sys.stderr)
        return 0
    result.update(peer=f"fer=={FER_VERSION} (FER(mtcnn=False): OpenCV Haar + TFLite mini-Xception)",
                  grin_model=portable_path(args.model), frames_source="bench/synthetic.py, seed 0")
    from bench.__main__ import machine_info

    result["machine"] = machine_info()
    write_json_atomic(args.json, result)
    print(summary(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
