"""Do the smile model's heat maps point at mouths? On the model's own GENKI-4K test split:
`python -m bench.explain_check --json models/smile/explain.json [--model models/smile] [--data <genki4k>]`.

For the test faces the model labels correctly as smiles, the share of each heat map's mass on the
lower third of the crop (the mouth), against baselines that know nothing of faces: a uniform map
(exactly 1/3), random maps made like Grad-CAM's (uniform noise at its resolution, scaled up the same
way) and the model's own maps with their pixels shuffled. Correct no-smile faces are given for contrast.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from core.fileio import write_json_atomic
from core.model import ModelError, ModelMeta
from core.portable import portable_command, portable_path
from bench.synthetic import default_genki
from core.registry import models_root
from core.runtime import quiet_command

BOOTSTRAP = 2000


def test_faces(model: Path, data: Path, split: str = "test"):
    """(Classifier, crops, labels) of the model's own `split` ("test" or "val") of `data` (its metadata's split seed)."""
    from core.model import Classifier
    from training.datasets import load_dataset
    from training.faces import extract_faces
    from training.split import split_indices

    meta = ModelMeta.load(model)
    task = meta.validate()
    if task.name != "smile":
        raise ModelError(f"{model} is a '{task.name}' model; this check is for smile models")
    ds = load_dataset(data, task)
    idx = split_indices(ds, meta.extra.get("split"), split)
    part = replace(ds, samples=[ds.samples[i] for i in idx])
    clf = Classifier(model, exact=True)
    faces = extract_faces(part, clf.preprocess, "auto")
    ok = faces.readable
    return clf, faces.x[ok], part.labels[ok]


def random_maps(n: int, resolution: tuple[int, int], size: int, rng: np.random.Generator) -> np.ndarray:
    """(n, size, size) maps of uniform noise at Grad-CAM's resolution, scaled up like its maps."""
    import cv2

    low = rng.random((n, *resolution)).astype(np.float32)
    return np.stack([cv2.resize(m, (size, size), interpolation=cv2.INTER_LINEAR) for m in low])


def shares(maps) -> np.ndarray:
    """Mouth share of each map (empty maps left out)."""
    from core.explain import region_share

    out = [region_share(m) for m in maps]   # maps: any iterable of (H, W) arrays
    return np.array([s for s in out if s is not None], np.float64)


def block_outputs(model) -> list[str]:
    """Names of the activation layers with a spatial 4-D output: the ends of the convolutional blocks."""
    return [l.name for l in model.layers if type(l).__name__ in ("Activation", "ReLU")
            and len(l.output.shape) == 4 and (l.output.shape[1] or 0) > 1]


def agreement(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    """Mean over faces of the Pearson correlation of two methods' maps (flat maps count 0)."""
    out = []
    for x, y in zip(a, b):
        x, y = x.ravel() - x.mean(), y.ravel() - y.mean()
        den = float(np.sqrt((x * x).sum() * (y * y).sum()))
        out.append(float((x * y).sum()) / den if den > 0 else 0.0)
    return float(np.mean(out)) if out else 0.0


def choose_layer(model: Path, data: Path) -> dict:
    """Per convolutional block, how well its Grad-CAM maps agree with occlusion's on the model's
    validation faces it calls right (any class), and the block that agrees best: the layer to explain.
    Occlusion is the model-agnostic reference; the test split and the mouth share play no part."""
    from core.explain import Explainer
    from core.pipeline import decide

    clf, x, y = test_faces(model, data, "val")
    pred = decide(clf.predict(x), clf.task, clf.meta.threshold)
    x, y = x[pred == y], y[pred == y]
    base = Explainer(clf, layer=block_outputs(clf.model)[-1], warm_up=False)
    occ = [e.heat for e in base.explain(x, y, method="occlusion")]
    by_layer = {}
    for layer in block_outputs(clf.model):
        ex = Explainer(clf, layer=layer, warm_up=False)
        by_layer[layer] = {"resolution": list(ex.resolution),
                           "agreement_with_occlusion": round(agreement([e.heat for e in ex.explain(x, y)], occ), 4)}
    best = max(by_layer, key=lambda k: by_layer[k]["agreement_with_occlusion"])
    return {"layer": best, "split": "val", "n": int(len(x)), "by_layer": by_layer,
            "rule": "the block whose Grad-CAM maps correlate best with occlusion's on correctly called validation faces"}


def summary_of(values: np.ndarray, rng: np.random.Generator) -> dict:
    """Mean, median and a bootstrap 95 % interval of the mean."""
    means = rng.choice(values, (BOOTSTRAP, len(values))).mean(axis=1) if len(values) else np.zeros(1)
    return {"mean": round(float(values.mean()), 4), "median": round(float(np.median(values)), 4),
            "ci95": [round(float(np.percentile(means, 2.5)), 4), round(float(np.percentile(means, 97.5)), 4)],
            "n": int(len(values))}


def run_check(model: Path, data: Path, seed: int = 0, layer: str | None = None) -> dict:
    """The figures of the module docstring, as a JSON-ready dict (Grad-CAM on `layer`, default the model's)."""
    from core.explain import MOUTH, Explainer
    from core.pipeline import decide

    t0 = time.perf_counter()
    clf, x, y = test_faces(model, data)
    task = clf.task
    pos = task.class_names.index(task.positive_class)
    pred = decide(clf.predict(x), task, clf.meta.threshold)
    explainer = Explainer(clf, layer=layer)
    rng = np.random.default_rng(seed)
    smiles = x[(y == pos) & (pred == pos)]
    others = x[(y != pos) & (pred != pos)]
    cam = [e.heat for e in explainer.explain(smiles, [pos] * len(smiles))]
    occ = [e.heat for e in explainer.explain(smiles, [pos] * len(smiles), method="occlusion")]
    cam_other = [e.heat for e in explainer.explain(others, [1 - pos] * len(others))]
    cam_s, occ_s, other_s = shares(cam), shares(occ), shares(cam_other)
    size = x.shape[1]
    rand_s = shares(random_maps(len(smiles), explainer.resolution, size, rng))
    shuffled_s = shares([rng.permutation(m.ravel()).reshape(m.shape) for m in cam])
    grad = summary_of(cam_s, rng)
    by_layer = {}
    for layer in block_outputs(clf.model):   # where in the network Grad-CAM's maps point at mouths
        ex = explainer if layer == explainer.layer.name else Explainer(clf, layer=layer, warm_up=False)
        by_layer[layer] = {"resolution": list(ex.resolution),
                           "mouth_share": round(float(shares(e.heat for e in ex.explain(smiles, [pos] * len(smiles))).mean()), 4)}
    return {
        "mouth_share_correct_smiles": grad["mean"],
        "random_baseline": round(float(rand_s.mean()), 4),
        "uniform_baseline": round(MOUTH[1] - MOUTH[0], 4),
        "n": int(len(smiles)),
        "method": "grad-cam",
        "occlusion_mouth_share": round(float(occ_s.mean()), 4),
        "grad_cam": grad,
        "occlusion": summary_of(occ_s, rng),
        "random_maps": summary_of(rand_s, rng),
        "shuffled_maps": summary_of(shuffled_s, rng),
        "correct_non_smiles_grad_cam": summary_of(other_s, rng),
        "grad_cam_by_layer": by_layer,
        "share_of_smiles_above_uniform": round(float((cam_s > MOUTH[1] - MOUTH[0]).mean()), 4),
        "mouth_region": "lower third of the face crop", "layer": explainer.layer.name,
        "grad_cam_resolution": list(explainer.resolution), "occlusion_masks": int(len(explainer.masks)),
        "model": portable_path(model), "data": portable_path(data), "split": "test", "n_test_faces": int(len(y)),
        "seed": seed, "seconds": round(time.perf_counter() - t0, 1),
        "command": portable_command(["python", "-m", "bench.explain_check", *sys.argv[1:]]),
    }


def main(argv=None) -> int:
    quiet_command(argv)
    p = argparse.ArgumentParser(prog="python -m bench.explain_check", description=__doc__.splitlines()[0])
    p.add_argument("--verbose", action="store_true", help="also show TensorFlow's own log lines and warnings")
    p.add_argument("--json", required=True, help="write the figures here (models/smile/explain.json for the card)")
    p.add_argument("--model", default=str(models_root() / "smile"), help="smile model folder (default: %(default)s)")
    p.add_argument("--data", default=str(default_genki()), help="GENKI-4K folder (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random baselines and the bootstrap")
    p.add_argument("--write-layer", action="store_true",
                   help="choose Grad-CAM's block on the validation faces (best agreement with occlusion) and "
                        "write it to the model's metadata.json as explain_layer, then measure with it")
    args = p.parse_args(argv)
    try:
        if not Path(args.data).exists():
            raise FileNotFoundError(f"no dataset at {args.data} (GENKI-4K; pass --data)")
        chosen = None
        if args.write_layer:
            chosen = choose_layer(Path(args.model), Path(args.data))
            meta = ModelMeta.load(args.model)
            meta.extra["explain_layer"] = chosen["layer"]
            meta.save(Path(args.model))
            print(f"Grad-CAM layer: {chosen['layer']} (agreement with occlusion on {chosen['n']} validation faces: "
                  + ", ".join(f"{k} {v['agreement_with_occlusion']:.3f}" for k, v in chosen["by_layer"].items()) + ")")
        out = run_check(Path(args.model), Path(args.data), args.seed)
        if chosen:
            out["layer_choice"] = chosen
    except (ModelError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    write_json_atomic(args.json, out)
    g, o = out["grad_cam"], out["occlusion"]
    print(f"{out['n']} correct smile predictions of {out['n_test_faces']} test faces: mouth share "
          f"Grad-CAM {g['mean']:.3f} (95 % CI {g['ci95'][0]:.3f}-{g['ci95'][1]:.3f}), occlusion {o['mean']:.3f}; "
          f"random maps {out['random_baseline']:.3f}, uniform {out['uniform_baseline']:.3f}, shuffled "
          f"{out['shuffled_maps']['mean']:.3f}; correct no-smiles {out['correct_non_smiles_grad_cam']['mean']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
