"""Model cards: a Markdown page describing a model folder from its metadata and measured figures."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from core.model import ModelMeta
from core.tasks import get_task


def _pct(v) -> str:
    return f"{v:.2%}" if isinstance(v, (int, float)) else "n/a"


def _eval_table(name: str, ev: dict) -> list[str]:
    lines = [f"### {name}", "",
             f"- images: {ev.get('n_images')}, faces found by the detector: {ev.get('n_faces_found', 'n/a')}",
             f"- accuracy **{_pct(ev.get('accuracy'))}**, balanced accuracy {_pct(ev.get('balanced_accuracy'))}, "
             f"macro F1 {ev.get('macro_f1', 'n/a')}" + (f", ROC AUC {ev['roc_auc']}" if ev.get("roc_auc") else ""),
             f"- calibration: ECE {ev.get('reliability', {}).get('ece', 'n/a')}, "
             f"NLL {ev.get('reliability', {}).get('nll', 'n/a')}, Brier {ev.get('reliability', {}).get('brier', 'n/a')}",
             "", "| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    for cls, m in ev.get("per_class", {}).items():
        lines.append(f"| {cls} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {m['support']} |")
    cm, names = ev.get("confusion_matrix"), ev.get("class_names")
    if cm and names:
        lines += ["", "Confusion matrix (rows: true, columns: predicted):", "",
                  "| | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
        lines += [f"| **{n}** | " + " | ".join(str(v) for v in row) + " |" for n, row in zip(names, cm)]
    return lines + [""]


def _ensemble_lines(meta: ModelMeta) -> list[str]:
    """What an ensemble is made of and how it was chosen (validation only)."""
    lines = ["- the mean of the probabilities of these members, each trained by `python -m training.train`:"]
    for i, m in enumerate(meta.extra["ensemble"], 1):
        acc = m.get("metrics", {}).get("val_accuracy")
        lines.append(f"  {i}. `{m['arch']}`, {m.get('n_params') or 0:,} parameters, validation accuracy "
                     f"{_pct(acc)} (no test-time views) at epoch {m.get('metrics', {}).get('epoch')}; "
                     f"command `{m['command']}`")
    rows = meta.extra.get("validation", [])
    if rows:
        lines += ["- validation accuracy with the shipped test-time views (how the ensemble and its views were "
                  "chosen; the test splits played no part):"]
        lines += [f"  - {r['model']}{' with its crops' if r['crops'] else ''}: {_pct(r['val_accuracy'])} "
                  f"(balanced {_pct(r['val_balanced_accuracy'])})" for r in rows]
    return lines


def _selection_line(meta: ModelMeta) -> str:
    if meta.extra.get("ensemble"):
        return "\n".join(_ensemble_lines(meta))
    swa = meta.extra.get("swa")
    if meta.metrics.get("swa") and swa:
        return (f"- weights: the mean of epochs {min(swa['epochs'])}-{max(swa['epochs'])} (SWA, batch-norm "
                f"statistics recomputed), validation accuracy {_pct(swa['val_accuracy'])} against "
                f"{_pct(swa['best_single_epoch_val_accuracy'])} for the best single epoch")
    if meta.metrics.get("fit_val"):
        return (f"- a final model: trained on the training and validation faces (`--fit-val`), so there is no "
                f"validation figure; the last epoch ({meta.metrics.get('epoch')}) is kept"
                + (f" and the decision threshold {meta.threshold:.2f} comes from the `--init` model"
                   if len(meta.class_names) == 2 else ""))
    return f"- best validation accuracy {_pct(meta.metrics.get('val_accuracy'))} at epoch {meta.metrics.get('epoch')}"


def _views_line(meta: ModelMeta) -> str:
    crops = len(meta.tta_crops)
    text = "flip averaging" if meta.tta_flip else "none"
    if crops:
        text = (f"the face and {crops} corner crops (90 %)" + (", each also mirrored" if meta.tta_flip else "")
                + f": {(1 + crops) * (2 if meta.tta_flip else 1)} network runs per face, averaged")
    return text


def render_card(folder: Path, evaluations: dict[str, dict], bench: dict | None = None, notes: str = "") -> str:
    """The model card text for a model folder."""
    meta = ModelMeta.load(folder)
    task = get_task(meta.task)
    extra = meta.extra
    data = extra.get("data", {})
    size_mb = (folder / "model.keras").stat().st_size / 2**20
    lines = [f"# Grin {task.title.lower()} model", "",
             f"Task **{task.name}**: classes {', '.join(task.display_names)}; input "
             f"{meta.preprocess['input_size']}x{meta.preprocess['input_size']} {meta.preprocess['color_mode']}, "
             f"face box widened x{meta.preprocess['widen']}{_equalize_note(meta)}. Architecture `{meta.arch}`, "
             f"{extra.get('n_params', 0):,} parameters, {size_mb:.1f} MB (`model.keras`, float32). "
             f"Test-time views: {_views_line(meta)}.", "",
             "## Training", "",
             f"- command: `{meta.command}`",
             f"- data: {data.get('dataset')} at `{data.get('root')}`; faces detected {data.get('faces_detected')}, "
             f"whole image used {data.get('faces_fallback')}; split sizes {data.get('split_sizes')}"
             f"{' (training includes the validation faces)' if meta.metrics.get('fit_val') else ''}; "
             f"extra training data {data.get('extra_training') or 'none'}",
             f"- split: {extra.get('split')} (stratified, exact duplicates kept on one side; official test splits kept)",
             f"- precision while training: {extra.get('precision')}; served in float32",
             _selection_line(meta),
             f"- decision threshold {meta.threshold:.2f}" if task.is_binary else "- decision: the most probable class",
             "", "## Evaluation", ""]
    for name, ev in evaluations.items():
        lines += _eval_table(name, ev)
    if bench:
        p = bench.get("pipeline_ms", {})
        lines += ["## Speed", "", f"From `python -m bench` on {bench.get('machine', {}).get('cpu_count', '?')} CPU cores:", "",
                  f"- whole pipeline, 640x480 frame, one face: median {p.get('one_face', {}).get('median')} ms, "
                  f"p95 {p.get('one_face', {}).get('p95')} ms",
                  f"- four faces: median {p.get('four_faces', {}).get('median')} ms",
                  f"- face detection alone (one face): median {bench.get('detect_ms', {}).get('one_face', {}).get('median')} ms",
                  f"- classifier: batch 1 {bench.get('classifier_ms', {}).get('batch1', {}).get('median')} ms, "
                  f"batch 32 {bench.get('classifier_ms', {}).get('batch32', {}).get('median')} ms; "
                  f"{bench.get('faces_per_second')} faces/s", ""]
    if notes:
        lines += ["## Notes and known limits", "", notes.strip(), ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.card", description=__doc__)
    p.add_argument("--model", required=True)
    p.add_argument("--eval", action="append", default=[], metavar="NAME=FILE.json",
                   help="an evaluation JSON to include (repeatable)")
    p.add_argument("--bench")
    p.add_argument("--notes", help="a Markdown file of notes and known limits")
    p.add_argument("--out", help="default: <model>/README.md")
    args = p.parse_args(argv)
    folder = Path(args.model)
    evals = {}
    for item in args.eval:
        name, _, path = item.partition("=")
        evals[name] = json.loads(Path(path).read_text())
    bench = json.loads(Path(args.bench).read_text()) if args.bench else None
    notes = Path(args.notes).read_text() if args.notes else ""
    text = render_card(folder, evals, bench, notes)
    Path(args.out or folder / "README.md").write_text(text)
    return 0


def _equalize_note(meta) -> str:
    """How each crop's contrast is normalised, when it is."""
    mode = meta.preprocess.get("equalize", "none")
    return "" if mode == "none" else f", each crop contrast-equalised ({mode.upper()})"


if __name__ == "__main__":
    sys.exit(main())
