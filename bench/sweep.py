"""Detector settings against speed and recall: each candidate's latency on the benchmark frames and,
optionally, its face-found rate over GENKI-4K (`training.faces.extract_faces`, the training path)."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from bench import EXPECTED_FACES, frames, measure
from core.detect import DetectorConfig, FaceDetector

# Changes from the DetectorConfig defaults, one knob at a time, then combinations. (min_neighbors
# only filters the candidates: it changes nothing in speed; min_face_frac 0.2 loses a mosaic face.)
CANDIDATES: tuple[dict, ...] = (
    {},
    {"equalize": False},
    {"max_side": 240},
    {"scale_factor": 1.2},
    {"min_face_frac": 0.15},
    {"max_side": 240, "min_face_frac": 0.15},
    {"equalize": False, "max_side": 240, "min_face_frac": 0.15},
    {"max_side": 240, "scale_factor": 1.2, "min_face_frac": 0.15},
    {"equalize": False, "max_side": 240, "scale_factor": 1.2, "min_face_frac": 0.15},
)


def genki_found_rate(genki: str | Path, cfg: DetectorConfig) -> dict:
    """Share of the GENKI-4K photos in which `cfg` finds a face: through the training code path
    (`extract_faces`: a finer second pass when the first finds nothing) and in one pass (live video)."""
    from core.imageio import load_image
    from core.tasks import get_task
    from training.data import task_preprocess
    from training.datasets import load_dataset
    from training.faces import extract_faces

    task = get_task("smile")
    ds = load_dataset(genki, task)
    t0 = time.perf_counter()
    faces = extract_faces(ds, task_preprocess(task), "auto", cfg, use_cache=False)
    seconds = time.perf_counter() - t0
    detector = FaceDetector(cfg)
    one_pass = sum(bool(detector.detect(load_image(s.source))) for s in ds.samples)
    n = len(ds.samples)
    return {"n": n, "found": int(faces.found.sum()), "rate": round(float(faces.found.mean()), 4),
            "one_pass_found": one_pass, "one_pass_rate": round(one_pass / n, 4),
            "ms_per_photo": round(seconds * 1000 / n, 2)}


def sweep(media: str | Path, genki: str | Path | None = None, iterations: int = 100,
          min_seconds: float = 1.0, candidates: tuple[dict, ...] = CANDIDATES) -> list[dict]:
    """One row per candidate setting (the first row is the default)."""
    imgs = frames(media)
    dets = {i: FaceDetector(DetectorConfig(**c)) for i, c in enumerate(candidates)}
    fns = {f"{i}/{k}": (lambda d=d, img=img: d.detect(img)) for i, d in dets.items() for k, img in imgs.items()}
    times = measure(fns, iterations, min_seconds)
    rows = []
    for i, change in enumerate(candidates):
        d = dets[i]
        row = {"change": change,
               "detect_ms": {k: round(float(np.median(times[f"{i}/{k}"]["wall"])), 3) for k in imgs},
               "detect_cpu_ms": {k: round(float(np.median(times[f"{i}/{k}"]["cpu"])), 3) for k in imgs},
               "faces_found": {k: len(d.detect(img)) for k, img in imgs.items()}}
        row["finds_all"] = row["faces_found"] == EXPECTED_FACES
        if genki:
            row["genki"] = genki_found_rate(genki, d.config)
        rows.append(row)
    return rows
