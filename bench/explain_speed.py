"""Speed of the explanations (`python -m bench --explain`): milliseconds per face for Grad-CAM and
occlusion, and what `core.predict --explain` adds per face (crop, Grad-CAM, side-by-side PNG)."""
from __future__ import annotations

from pathlib import Path

from bench import frames, measure, summarize
from core.detect import FaceDetector
from core.explain import Explainer, explain_faces, side_by_side
from core.imageio import encode_png
from core.model import Classifier

PREDICT_EXTRA_TARGET_MS = 200.0     # per face, on the 2-core reference machine
FACE_TARGET_MS = 100.0              # one face, each method


def explain_benchmark(clf: Classifier, media: str | Path, iterations: int = 50, min_seconds: float = 2.0) -> dict:
    """Median / p95 ms per face of each method on the one-face and four-face frames."""
    explainer = Explainer(clf)
    det = FaceDetector()
    imgs = frames(media)
    boxes = {kind: det.detect(img) for kind, img in imgs.items()}

    def predict_extra(img, found):
        for fe in explain_faces(explainer, img, found):
            encode_png(side_by_side(fe.crop, fe.explanation.heat))

    fns = {}
    for kind, img in imgs.items():
        for method in ("grad-cam", "occlusion"):
            fns[f"{method}/{kind}"] = lambda img=img, b=boxes[kind], m=method: explain_faces(explainer, img, b, method=m)
        fns[f"predict_extra/{kind}"] = lambda img=img, b=boxes[kind]: predict_extra(img, b)
    times = measure(fns, iterations, min_seconds)
    per_face = {}
    for name, t in times.items():
        n = max(1, len(boxes[name.split("/")[1]]))
        per_face[name] = summarize([ms / n for ms in t["wall"]])
    one = {m: per_face[f"{m}/one_face"]["median"] for m in ("grad-cam", "occlusion", "predict_extra")}
    return {
        "ms_per_face": per_face,
        "faces": {k: len(b) for k, b in boxes.items()},
        "layer": explainer.layer.name, "grad_cam_resolution": list(explainer.resolution),
        "occlusion_masks": int(len(explainer.masks)),
        "target": {"one_face_ms_each_method": FACE_TARGET_MS, "predict_extra_ms_per_face": PREDICT_EXTRA_TARGET_MS,
                   "met": max(one["grad-cam"], one["occlusion"]) < FACE_TARGET_MS
                   and one["predict_extra"] < PREDICT_EXTRA_TARGET_MS},
    }


def explain_summary(r: dict) -> str:
    """Lines for people."""
    p = r["ms_per_face"]
    lines = [f"explanations ({r['layer']} at {r['grad_cam_resolution'][0]}x{r['grad_cam_resolution'][1]}, "
             f"{r['occlusion_masks']} occlusion masks), ms per face, one-face / four-face frame (median, p95):"]
    for name in ("grad-cam", "occlusion", "predict_extra"):
        a, b = p[f"{name}/one_face"], p[f"{name}/four_faces"]
        label = "predict --explain extra" if name == "predict_extra" else name
        lines.append(f"  {label:>24}: {a['median']:.1f} (p95 {a['p95']:.1f}) / {b['median']:.1f} (p95 {b['p95']:.1f})")
    t = r["target"]
    lines.append(f"  target: each method under {t['one_face_ms_each_method']:.0f} ms and predict --explain under "
                 f"{t['predict_extra_ms_per_face']:.0f} ms extra per face: {'met' if t['met'] else 'NOT met'}")
    return "\n".join(lines)
