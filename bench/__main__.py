"""Speed of the whole pipeline (detect + crop + classify) on real 640x480 frames:
`python -m bench --json <out.json> [--task smile|expression] [--model DIR] [--media DIR]`.

Every figure is measured in one run with the calls interleaved, so the pipeline / detection
ratio compares like with like even on a busy machine.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

import cv2
import numpy as np

from bench import EXPECTED_FACES, VIDEO, MediaError, default_media, frames, measure, summarize
from core.detect import LIVE_DETECTOR, DetectorConfig, FaceDetector
from core.fileio import write_json_atomic
from core.model import Classifier, ModelError, ModelMeta
from core.pipeline import Pipeline
from core.portable import portable_path
from core.preprocess import crop_faces
from core.registry import models_root
from core.runtime import quiet_command
from core.tasks import TASKS

# median per 640x480 one-face frame on the 2-core reference machine: the smile ship rule's floor, and issue 25's
# aim for the expression model's ten-crop test
TARGET_MS = {"smile": 15.0, "expression": 20.0}


def machine_info() -> dict:
    from core.runtime import BF16_CPU_FLAGS, cpu_flags, cpu_model, tensorflow

    tf = tensorflow()
    import keras

    gpus = [d.name for d in tf.config.list_physical_devices("GPU")]
    return {
        "cpu_model": cpu_model(), "cpu_bf16": bool(cpu_flags() & BF16_CPU_FLAGS),
        "cpu_count": os.cpu_count(), "cpus_usable": len(os.sched_getaffinity(0)),
        "load_average_1m": round(os.getloadavg()[0], 2), "platform": platform.platform(),
        "machine": platform.machine(), "python": platform.python_version(),
        "tensorflow": tf.__version__, "keras": keras.__version__, "opencv": cv2.__version__,
        "opencv_threads": cv2.getNumThreads(), "gpu": bool(gpus), "gpus": gpus,
    }


def run_benchmark(model: str | Path, media: str | Path, iterations: int = 200, min_seconds: float = 2.0,
                  detector: DetectorConfig | None = None, crops: bool = True) -> dict:
    """All figures as a JSON-ready dict (see the module docstring)."""
    clf = Classifier(model, crops=crops)
    det = FaceDetector(detector or LIVE_DETECTOR)
    pipe = Pipeline(clf, det)
    imgs = frames(media)
    faces_found = {k: len(det.detect(img)) for k, img in imgs.items()}

    fns, split = {}, {k: {"detect": [], "classify": []} for k in imgs}
    for kind, img in imgs.items():
        def run_pipeline(kind=kind, img=img):
            pipe(img)
            split[kind]["detect"].append(pipe.last_timing.detect_ms)
            split[kind]["classify"].append(pipe.last_timing.classify_ms)
        fns[f"pipeline/{kind}"] = run_pipeline
        fns[f"detect/{kind}"] = lambda img=img: det.detect(img)
    frame_times = measure(fns, iterations, min_seconds)

    four = imgs["four_faces"]
    boxes = det.detect(four)
    crops = crop_faces(four, boxes, clf.preprocess)
    batch32 = np.concatenate([crops] * (32 // max(1, len(crops)) + 1))[:32] if len(crops) else \
        np.zeros((32, *clf.preprocess.input_shape), np.uint8)
    model_times = measure({"crop4": lambda: crop_faces(four, boxes, clf.preprocess),
                           "batch1": lambda: clf.predict(batch32[:1]),
                           "batch32": lambda: clf.predict(batch32)}, iterations, min_seconds / 2)

    pipeline_ms = {k: summarize(frame_times[f"pipeline/{k}"]["wall"]) for k in imgs}
    detect_ms = {k: summarize(frame_times[f"detect/{k}"]["wall"]) for k in imgs}
    classifier_ms = {k: summarize(model_times[k]["wall"]) for k in ("batch1", "batch32")}
    cpu = {name: round(float(np.median(t["cpu"])), 3) for name, t in {**frame_times, **model_times}.items()}
    ratios = {k: round(pipeline_ms[k]["median"] / detect_ms[k]["median"], 3) for k in imgs}
    one = pipeline_ms["one_face"]["median"]
    return {
        "machine": machine_info(),
        "model": {"path": portable_path(model), "task": clf.task.name, "arch": clf.meta.arch, "n_params": clf.n_params,
                  "input": list(clf.preprocess.input_shape), "tta_flip": clf.meta.tta_flip,
                  "tta_crops": len(clf.crops), "model_runs_per_face": clf.n_views,
                  "runtime": clf.runtime, "precision": clf.precision},
        "detector": det.config.to_dict(),
        "settings": {"iterations": iterations, "min_seconds": min_seconds, "media": portable_path(media),
                     "frame": "640x480"},
        "faces_expected": EXPECTED_FACES,
        "faces_found": faces_found,
        "pipeline_ms": pipeline_ms,
        "pipeline_split_ms": {k: {part: round(float(np.median(v)), 3) for part, v in parts.items()}
                              for k, parts in split.items()},
        "detect_ms": detect_ms,
        "crop_ms": {"four_faces": summarize(model_times["crop4"]["wall"])},
        "cpu_ms": cpu,
        "classifier_ms": classifier_ms,
        "faces_per_second": round(4 * 1000 / pipeline_ms["four_faces"]["median"], 1),
        "classifier_faces_per_second": round(32 * 1000 / classifier_ms["batch32"]["median"], 1),
        "ratio_pipeline_to_detect": ratios["one_face"],
        "ratio_pipeline_to_detect_by_frame": ratios,
        "target": {"one_face_median_ms": TARGET_MS[clf.task.name], "met": one < TARGET_MS[clf.task.name]},
    }


def summary(r: dict) -> str:
    """A few lines for people."""
    m, p, d, c = r["machine"], r["pipeline_ms"], r["detect_ms"], r["classifier_ms"]
    lines = [
        f"{r['model']['task']} model {r['model']['path']} ({r['model']['n_params']:,} parameters, "
        f"flip TTA {'on' if r['model']['tta_flip'] else 'off'}, {r['model'].get('model_runs_per_face', 2)} "
        f"network runs per face; {r['model'].get('runtime', '?')}, {r['model'].get('precision', 'f32')}) "
        f"on {m['cpus_usable']} CPUs"
        f"{' + GPU' if m['gpu'] else ''}, load {m['load_average_1m']}, TF {m['tensorflow']}",
        f"faces found: one_face {r['faces_found']['one_face']}, four_faces {r['faces_found']['four_faces']}",
    ]
    for k in ("one_face", "four_faces"):
        lines.append(f"{k:>10}: pipeline median {p[k]['median']:.1f} ms (p95 {p[k]['p95']:.1f}), detection alone "
                     f"{d[k]['median']:.1f} ms (p95 {d[k]['p95']:.1f}), ratio "
                     f"{r['ratio_pipeline_to_detect_by_frame'][k]:.2f}")
    cpu = r["cpu_ms"]
    lines.append(f"CPU time per call (all threads; unaffected by waiting on a busy machine): pipeline "
                 f"{cpu['pipeline/one_face']:.1f} / {cpu['pipeline/four_faces']:.1f} ms, detection "
                 f"{cpu['detect/one_face']:.1f} / {cpu['detect/four_faces']:.1f} ms (one / four faces)")
    lines.append(f"classifier: batch 1 {c['batch1']['median']:.2f} ms, batch 32 {c['batch32']['median']:.2f} ms "
                 f"({r['classifier_faces_per_second']:.0f} faces/s); pipeline {r['faces_per_second']:.0f} faces/s")
    for row in r.get("detector_sweep", []):
        g = row.get("genki")
        genki = f", GENKI-4K found {g['rate']:.2%} (one pass {g['one_pass_rate']:.2%})" if g else ""
        lines.append(f"detector {row['change'] or 'defaults'}: {row['detect_cpu_ms']['one_face']:.1f} / "
                     f"{row['detect_cpu_ms']['four_faces']:.1f} ms CPU, faces {row['faces_found']['one_face']}+"
                     f"{row['faces_found']['four_faces']}{genki}")
    t = r["target"]
    lines.append(f"target: one-face median under {t['one_face_median_ms']:.0f} ms: {'met' if t['met'] else 'NOT met'}")
    return "\n".join(lines)


def detector_config(settings: list[str]) -> DetectorConfig:
    """The live-video DetectorConfig with KEY=VALUE changes (values typed like the defaults); ValueError if unknown."""
    base = LIVE_DETECTOR.to_dict()
    for item in settings:
        key, sep, value = item.partition("=")
        if not sep or key not in base:
            raise ValueError(f"--detector {item!r}: expected KEY=VALUE with KEY one of {', '.join(base)}")
        kind = type(base[key])
        try:
            base[key] = value.lower() in ("1", "true", "yes") if kind is bool else kind(value)
        except ValueError:
            raise ValueError(f"--detector {item!r}: {key} must be of type {kind.__name__}") from None
    return DetectorConfig(**base)


def stream_inputs(args) -> dict:
    """{name: (frames, true boxes or None, source)} for --video and --frames; MediaError when a file is missing."""
    from bench.synthetic import default_genki
    from bench.video import synthetic, video_frames

    out = {}
    if args.video is not None:
        path = Path(args.video or Path(args.media) / VIDEO)
        if not path.is_file():
            raise MediaError(f"--video {path}: no such file")
        import av

        try:
            clip = video_frames(path)
        except av.error.FFmpegError as exc:
            raise MediaError(f"--video {path}: not a video this machine can read ({exc})") from None
        out["video"] = (clip, None, portable_path(path))
    if args.frames == "synthetic":
        genki = Path(args.genki) if args.genki else default_genki()
        if not (genki / "files").is_dir():
            raise MediaError(f"--frames synthetic needs GENKI-4K's photos: {genki}/files is missing (pass --genki)")
        out["synthetic"] = (*synthetic(genki), "bench/synthetic.py, seed 0, GENKI-4K photos")
    return out


def main(argv=None) -> int:
    quiet_command(argv)
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--json", required=True, help="write the figures here")
    p.add_argument("--task", choices=sorted(TASKS), help="task (default: the model's, else smile)")
    p.add_argument("--model", help="model folder (default: models/<task>)")
    p.add_argument("--media", default=str(default_media()), help="folder with smile_video.mp4 and expressions/")
    p.add_argument("--iterations", type=int, default=200, help="timed calls per measurement (at least)")
    p.add_argument("--min-seconds", type=float, default=2.0, help="time each measurement for at least this long")
    p.add_argument("--detector", action="append", default=[], metavar="KEY=VALUE",
                   help="a DetectorConfig setting to try, e.g. max_side=240 (repeatable)")
    p.add_argument("--no-crops", action="store_true", help="leave out the model's extra test-time crops")
    p.add_argument("--sweep", action="store_true", help="also time other detector settings (see bench/sweep.py)")
    p.add_argument("--genki", help="GENKI-4K folder: with --sweep, each setting's face-found rate (minutes); "
                        "with --frames synthetic, the faces' source")
    p.add_argument("--explain", action="store_true",
                   help="also time the explanations: ms per face for Grad-CAM and occlusion (see bench/explain_speed.py)")
    p.add_argument("--video", nargs="?", const="", metavar="FILE",
                   help="also run a video through the tracked stream and the still-frame pipeline, interleaved "
                        "(default file: <media>/smile_video.mp4): ms per frame, faces found, label agreement")
    p.add_argument("--frames", choices=["synthetic"],
                   help="synthetic: also run seeded GENKI-4K faces (60-200 px) on textured 640x480 backgrounds "
                        "(bench/synthetic.py; GENKI-4K from --genki or ../shared): share of frames with the face found")
    p.add_argument("--passes", type=int, default=3, help="times over the --video / --frames frames (timing only)")
    p.add_argument("--verbose", action="store_true", help="also show TensorFlow's own log lines and warnings")
    args = p.parse_args(argv)
    if args.iterations < 1 or args.min_seconds < 0 or args.passes < 1:
        print("error: --iterations and --passes must be at least 1 and --min-seconds at least 0", file=sys.stderr)
        return 2
    model = Path(args.model) if args.model else models_root() / (args.task or "smile")
    try:
        detector = detector_config(args.detector)
        task = ModelMeta.load(model).validate()
        if args.task and task.name != args.task:
            raise ModelError(f"{model} is a '{task.name}' model, not a '{args.task}' model")
        frames(args.media)  # a missing media folder is reported before the model loads
        streams = stream_inputs(args)
        result = run_benchmark(model, args.media, args.iterations, args.min_seconds, detector, not args.no_crops)
        for name, (clip, truth, source) in streams.items():
            from bench.video import compare

            r = compare(Classifier(model, crops=not args.no_crops), clip, truth, args.passes, detector)
            result.setdefault("streams", {})[name] = {"source": source, **r}
        if args.sweep:
            from bench.sweep import sweep

            result["detector_sweep"] = sweep(args.media, args.genki, args.iterations, args.min_seconds)
        if args.explain:
            from bench.explain_speed import explain_benchmark

            result["explain"] = explain_benchmark(Classifier(model, warm_up=False, crops=not args.no_crops),
                                                  args.media, min(args.iterations, 50), args.min_seconds)
    except (MediaError, ModelError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    write_json_atomic(args.json, result)
    print(summary(result))
    for name, r in result.get("streams", {}).items():
        from bench.video import summary as stream_summary

        print(stream_summary(r, name))
    if "explain" in result:
        from bench.explain_speed import explain_summary

        print(explain_summary(result["explain"]))
    if result["faces_found"] != EXPECTED_FACES:
        print(f"error: the detector found {result['faces_found']} faces, expected {EXPECTED_FACES}: "
              "the timings are not of the frames they claim to be", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
