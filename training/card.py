"""Model cards in the Hugging Face form, generated from a model folder's JSON files so that no figure can
drift from its source: `python -m training.card models/smile --write` (re)writes models/smile/README.md.

One template serves the bundled models and `training.hub push`; every figure comes from metadata.json,
generalisation.json (else the eval_*.json / eval.json files), bench.json, explain.json and metrics*.jsonl.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.model import META_FILE, MODEL_FILE, RUNTIME_TITLES, ModelMeta
from core.tasks import Task, get_task
from training.card_data import (CheckRow, check_rows, curve_rows, dataset_title, eval_label, lineage, machine_line,
                                machines_line, offsets_text, primary_eval, read_json, worst_line)
from training.card_text import DATASET_TEXT, TASK_TEXT, fer_negatives_text
from training.config import CROSS_TASK_TEACHERS, teacher_list

CARD_FILE, CURVES_FILE = "README.md", "learning_curves.png"
OFFSET_FILE = "offset_curve.json"       # `python -m bench.offset_curve`'s figures, where measured
OFFSET_SHOWN = (0.5, 1.0)               # the offsets the card's table shows, beside the model's own
# (set in the curve, figure, column title): {cls} is the class whose offset moves
OFFSET_COLUMNS = (("fer2013-public-test", "accuracy", "PublicTest accuracy"),
                  ("genki4k-train-subset", "recall", "GENKI-4K calm faces read {cls}"),
                  ("genki4k-train-subset/tight", "recall", "tightly cropped"))


def _pct(v: float | None, digits: int = 1) -> str:
    return "n/a" if v is None else f"{100 * v:.{digits}f} %"


def front_matter(folder: Path, meta: ModelMeta, rows: list[CheckRow]) -> str:
    """The YAML block the Hub reads: licence, library, tags, datasets and the model-index metrics."""
    from huggingface_hub import EvalResult, ModelCardData

    task = get_task(meta.task)
    results = [EvalResult(task_type="image-classification", dataset_type=r.dataset_id, dataset_name=r.dataset,
                          dataset_split=r.split, metric_type=metric, metric_name=f"{metric} ({r.name})",
                          metric_value=value)
               for r in rows if r.in_index for metric, value in (("accuracy", r.accuracy),
                                                                 ("balanced_accuracy", r.balanced_accuracy))]
    datasets = sorted({r.dataset_id for r in rows if r.dataset_id in ("genki4k", "fer2013")})
    data = ModelCardData(license="other", library_name="keras", pipeline_tag="image-classification",
                         tags=["grin", "keras", "face", f"{task.name}-recognition", "opencv"],
                         datasets=datasets or None, metrics=["accuracy", "balanced_accuracy"],
                         model_name=f"grin-{folder.name}", eval_results=results or None)
    return f"---\n{data.to_yaml()}\n---\n"


def _intro(folder: Path, meta: ModelMeta, task: Task) -> list[str]:
    pp = meta.preprocess
    from bench.ship_rules import model_size_mb

    mb = model_size_mb(folder)
    return [f"# Grin {task.title.lower()} model", "",
            f"A Keras CNN (`{meta.arch}`, {meta.extra.get('n_params', 0):,} parameters, {mb:.1f} MB) that labels a "
            f"face {'as ' + ' or '.join(task.display_names) if task.is_binary else 'with one of ' + str(task.n_classes) + ' expressions: ' + ', '.join(task.display_names)}. "
            f"It sees {pp['input_size']}x{pp['input_size']} {pp['color_mode']} face crops found by OpenCV's Haar "
            "detector, and is part of Grin, an open-source smile and expression recognition studio.", ""]


def _use(meta: ModelMeta, task: Task, folder: Path) -> list[str]:
    text = TASK_TEXT.get(task.name, TASK_TEXT["default"])
    pp = meta.preprocess
    return ["## Intended use", "", text["intended"], "", "## Out-of-scope use", "", text["out_of_scope"], "",
            "## How to use", "",
            "- **The app**: `streamlit run app.py`, then the Webcam or Upload page, with this model chosen in the "
            "sidebar (a pulled model: `python -m training.hub pull OWNER/NAME` first).",
            f"- **Command line**: `python -m core.predict photo.jpg --model models/{folder.name}` prints each face's "
            "box, label and probabilities (`--json` for JSON).",
            "- **Python**, in the Grin repository:", "",
            "```python", "from core.imageio import load_image; from core.model import Classifier; from core.pipeline import Pipeline",
            f"pipeline = Pipeline(Classifier(\"models/{folder.name}\"))",
            "for face in pipeline(load_image(\"photo.jpg\"), thorough=True): print(face.box, face.label, round(face.score, 3))",
            "```", "",
            f"Outside Grin, `keras.saving.load_model(\"{MODEL_FILE}\", safe_mode=True)` takes "
            f"{pp['input_size']}x{pp['input_size']} uint8 {pp['color_mode']} crops{_equalize_use(meta)} as float32 "
            f"(0-255) and outputs probabilities for {', '.join(task.class_names)}; `{META_FILE}` holds the framing "
            + ("and the `class_bias` to add to the log-probabilities." if offsets_text(meta)
               else "and the threshold."), ""]


def _data(meta: ModelMeta, task: Task) -> list[str]:
    d, pp = meta.extra.get("data", {}), meta.preprocess
    extra = d.get("extra_training") or {}
    sizes = d.get("split_sizes", {})
    lines = ["## Training data and preprocessing", "",
             f"- **{dataset_title(d.get('dataset'))}**: {d.get('n_samples', 'n/a'):,} images; "
             + DATASET_TEXT.get(d.get("dataset"), {}).get("about", "the images given to `--data`.")]
    negatives = fer_negatives_text((meta.extra.get("train_config") or {}).get("fer_negatives") or 0)
    for root, n in extra.items():
        lines.append(f"- **{dataset_title(root)}** (`--extra-data`): {n:,} training faces; "
                     + DATASET_TEXT.get(root.strip("<>"), {}).get("as_extra", "more training images.")
                     .format(negatives=negatives))
    lines += _distill_note(meta, task)
    if (meta.extra.get("train_config") or {}).get("class_weights") == "per-collection":
        lines.append("- Class weights (`--class-weights per-collection`): each training face weighs by its true class "
                     "so that the main dataset and the extra data are each class-balanced, each keeping its share.")
    split = meta.extra.get("split", {})
    lines += [f"- Split: {sizes.get('train', 0):,} training, {sizes.get('val', 0):,} validation, "
              f"{sizes.get('test', 0):,} test faces (seed {split.get('seed', 'n/a')}, stratified, exact duplicates "
              "on one side, official test splits kept)"
              + (_fit_val_note(meta, task) if meta.metrics.get("fit_val") else "."),
              f"- Faces: {_faces_note(d)} Each box is widened x{pp['widen']}{_equalize_note(meta)}, cut square and "
              f"resized to {pp['input_size']} px {pp['color_mode']}{_deblock_note(meta)}.",
              f"- At test time: {_views(meta)}"
              + (f", then {offsets_text(meta)} added to the log-probabilities (`class_bias`)"
                 if offsets_text(meta) else "") + "; "
              + (f"a face is called *{task.display_names[1]}* above probability {meta.threshold:.2f}"
                 f"{_threshold_note(meta)}." if task.is_binary else "the most probable class wins."), ""]
    return lines


def _deblock_note(meta: ModelMeta) -> str:
    """Deblocking, when the model asks for it: which crops are blurred, and how much."""
    sigma = meta.preprocess_config.deblock
    if not sigma:
        return ""
    how = []
    if meta.extra.get("deblock_choice"):
        how.append("chosen on the validation suite by `python -m bench.deblock`")
    if sigma in trained_deblocks(meta.extra):
        how.append("as its compressed training faces were with `--deblock`")
    origin = "".join(", " + h for h in how)
    return f"; crops of pictures that show JPEG's block grid are then blurred (sigma {sigma:g} px{origin})"


def trained_deblocks(extra: dict) -> set[float]:
    """The deblocking sigmas that a model's training runs, or its averaged members', blurred compressed faces by."""
    found = {float(((extra.get("train_config") or {}).get("augment") or {}).get("deblock") or 0)}
    for member in extra.get("ensemble") or []:
        found |= trained_deblocks(member)
    return found - {0.0}


def _threshold_note(meta: ModelMeta) -> str:
    """Where the decision threshold came from, when not from the run's own GENKI-4K-style validation tuning."""
    choice = meta.extra.get("threshold_choice")
    if not isinstance(choice, dict):
        return ""
    return (f", chosen on the whole validation suite (the run's own tuning gave "
            f"{float(choice['threshold_tuned_on_genki4k_val']):.2f}): {choice['rule']}")


def _distill_note(meta: ModelMeta, task: Task) -> list[str]:
    """How the targets were made when the last run distilled from a teacher (`--teacher`)."""
    cfg = meta.extra.get("train_config") or {}
    teachers, w = teacher_list(cfg.get("teacher")), float(cfg.get("distill") or 0)
    if not teachers or not w:
        return []
    records = meta.extra.get("teachers") or []   # as each teacher was when the run began (runs since session 35)
    tasks = ([str(r.get("task", "")) for r in records] if len(records) == len(teachers)
             else [str(read_json(Path(t) / META_FILE).get("task", "")) for t in teachers])
    what = " and ".join(_teacher_reads(t, task) for t in tasks)
    if len(teachers) > 1:
        what = f"the mean of {what}"
    option = " ".join(f"--teacher {t}" for t in teachers)
    which = f" The teachers were {'; '.join(r['folder'] for r in records)}." if records else ""
    if cfg.get("distill_on", "all") == "extra":
        return [f"- Distillation (`{option} --distill {w:g} --distill-on extra`): each target of the "
                f"extra collections' faces is {1 - w:.0%} the true label, {w:.0%} {what} on the stored face; the "
                f"main dataset's faces keep their true labels.{which}"]
    return [f"- Distillation (`{option} --distill {w:g}`): each target is {1 - w:.0%} the true label, "
            f"{w:.0%} {what} on the stored face.{which}"]


def _teacher_reads(teacher_task: str, task: Task) -> str:
    """What a teacher of `teacher_task` gives a run of `task`: its probabilities, or an expression model's P(happy)."""
    return (f"the {teacher_task} model's P(happy)" if (teacher_task, task.name) in CROSS_TASK_TEACHERS
            else f"the {teacher_task or 'teacher'} model's probabilities")


def _fit_val_note(meta: ModelMeta, task: Task) -> str:
    if meta.extra.get("ensemble"):
        return "; one member trained on the validation faces too (`--fit-val`)."
    return ("; this final model also trained on the validation faces (`--fit-val`), so it has no validation figure: "
            f"the last epoch ({meta.metrics.get('epoch')}) is kept"
            + (", with the decision threshold of its `--init` model." if task.is_binary else "."))


def _faces_note(d: dict) -> str:
    found, whole = d.get("faces_detected", 0), d.get("faces_fallback", 0)
    if not found:
        return "every image is already a face crop, taken whole."
    return f"the detector found {found:,}; {whole:,} images were taken whole (no face found, or already cropped)."


def _evaluation(rows: list[CheckRow], gen: dict, task: Task) -> list[str]:
    if not rows:
        return ["## Evaluation", "", "No evaluation has been recorded for this model.", ""]
    source = ("`python -m bench.generalisation` (`generalisation.json`): held-out benchmarks, the same faces under "
              "changed conditions, and collections no Grin model trains on" if gen else
              "`python -m training.evaluate` (the `eval*.json` files beside the model)")
    lines = ["## Evaluation", "", f"From {source}.", "",
             "| check | dataset / split | n | accuracy | balanced accuracy | per-class recall | ROC AUC |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        as_is = "/" not in r.name     # per-class recall for the collections as they are; conditions: the figures
        recall = ", ".join(f"{k} {v:.2f}" for k, v in r.per_class_recall.items()) if as_is else "-"
        auc = f"{r.roc_auc:.3f}" if r.roc_auc is not None else "-"
        lines.append(f"| {r.name} | {r.dataset} / {r.split} | {r.n:,} | {_pct(r.accuracy)} | "
                     f"{_pct(r.balanced_accuracy)} | {recall} | {auc} |")
    notes = [f"{r.name}: {r.note}" for r in rows if r.note and "/" not in r.name]
    if any("/" in r.name and "every" in r.note for r in rows):
        notes.append("condition checks of the larger collections read an evenly spaced subset of about 1,200 faces")
    lines += [""] + ([f"Notes: {'; '.join(notes)}.", ""] if notes else [])
    worst = worst_line(gen, rows)
    return lines + ([worst, ""] if worst else [])


def _calibration(folder: Path, task: Task) -> list[str]:
    _, ev = primary_eval(folder, task)
    rel = ev.get("reliability") if ev else None
    if not rel:
        return []
    bins = ", ".join(f"{b['bin'][0]:.1f}-{b['bin'][1]:.1f} {_pct(b['accuracy'], 0)} ({b['n']})"
                     for b in rel.get("bins", []) if b.get("n"))
    return ["## Calibration", "",
            f"On {eval_label(ev)}: expected calibration error {rel.get('ece')}, log loss {rel.get('nll')}, "
            f"Brier score {rel.get('brier')}. Right by confidence (faces): {bins}.", ""]


def _offset_curve(folder: Path) -> list[str]:
    """What moving one class's offset trades (`python -m bench.offset_curve`), where it was measured."""
    d = read_json(folder / OFFSET_FILE)
    if not d or not d.get("rows"):
        return []
    cls, own = d["class"], d["model_offset"]
    rows = [r for r in d["rows"] if any(abs(r["offset"] - v) < 1e-6 for v in (own, *OFFSET_SHOWN))]
    cols = [c for c in OFFSET_COLUMNS if c[0] in rows[0]]
    table = ["| offset | " + " | ".join(t.format(cls=cls) for *_, t in cols) + " |",
             "|---" * (len(cols) + 1) + "|"]
    for r in rows:
        mark = " (own)" if abs(r["offset"] - own) < 1e-6 else ""
        table.append(f"| {r['offset']:+.1f}{mark} | " + " | ".join(_pct(r[n][k]) for n, k, _ in cols) + " |")
    return [f"## Calm faces and the {cls} offset", "",
            f"Added to {cls}'s log-probability before the likeliest class wins: {own:+.2f} here. Raise it (sidebar: "
            f"\"Neutral offset\"; `core.predict --offset {cls}=V`) if calm faces read sad, angry or afraid. "
            f"Measured by `bench.offset_curve` on FER-2013 PublicTest and GENKI-4K training photos:", "",
            *table, ""]


def _speed(bench: dict) -> list[str]:
    if not bench:
        return []
    p, c = bench.get("pipeline_ms", {}), bench.get("classifier_ms", {})
    return ["## Speed", "",
            f"`python -m bench` on {machine_line(bench.get('machine', {}))}: one face of a 640x480 frame, detection to "
            f"label, {p.get('one_face', {}).get('median')} ms (median; p95 {p.get('one_face', {}).get('p95')} ms), "
            f"four faces {p.get('four_faces', {}).get('median')} ms; detection "
            f"{bench.get('detect_ms', {}).get('one_face', {}).get('median')} ms, the network "
            f"{c.get('batch1', {}).get('median')} ms; {bench.get('faces_per_second')} faces/s in batches"
            f"{_served(bench.get('model', {}))}." + _stream_speed(bench.get("streams", {}).get("video", {})), ""]


def _served(model: dict) -> str:
    """', through OpenVINO in bfloat16 (...)': how the benchmarked network ran, if recorded."""
    runtime = model.get("runtime")
    if not runtime:
        return ""
    name = RUNTIME_TITLES.get(runtime, runtime)
    if model.get("precision") in ("bf16", "int8"):
        precision = {"bf16": "bfloat16", "int8": "int8 (`model.int8.onnx`)"}[model["precision"]]
        return f", through {name} in {precision} (near ties re-read in float32: float32's labels)"
    return f", through {name} in float32"


def _stream_speed(v: dict) -> str:
    """A sentence on the tracked stream of `python -m bench --video`, if it ran."""
    if not v.get("tracked_ms"):
        return ""
    return (f" A tracked stream (`python -m bench --video`, {v.get('frames')} frames of "
            f"{Path(str(v.get('source'))).name}): {v['tracked_ms'].get('mean')} ms a frame on average "
            f"({v.get('still_ms', {}).get('mean')} ms frame by frame), {_pct(v.get('label_agreement'), 1)} of labels "
            "as frame by frame.")


def _limits(meta: ModelMeta, task: Task, rows: list[CheckRow], folder: Path) -> list[str]:
    text = TASK_TEXT.get(task.name, TASK_TEXT["default"])
    lines = ["## Limitations and biases", ""] + [f"- {t}" for t in text["limits"](rows, folder)]
    explain = read_json(folder / "explain.json")
    if explain.get("mouth_share_correct_smiles") is not None:
        lines += ["", f"**What the model looks at**: for {explain.get('n')} correctly called smiles, "
                      f"{_pct(explain['mouth_share_correct_smiles'], 0)} of the {explain.get('method', 'grad-cam')} "
                      f"heat map lies on the mouth (the lower third of the crop), against "
                      f"{_pct(explain.get('random_baseline'), 0)} for random maps"
                      + (f"; occlusion puts {_pct(explain['occlusion_mouth_share'], 0)} there"
                         if explain.get("occlusion_mouth_share") is not None else "") + " (`explain.json`)."]
    return lines + [""]


def _training(folder: Path, meta: ModelMeta) -> list[str]:
    steps = lineage(folder, meta)
    cfg = meta.extra.get("train_config", {})
    total = sum(s.minutes for s in steps if s.minutes)
    lines = ["## How it was trained", ""]
    for i, s in enumerate(steps, 1):
        when = f" ({s.minutes:.0f} min)" if s.minutes else ""
        lines.append(f"{i}. {s.what}{when}" + ("" if s.brief else f": `{s.command}`"))
    if any(s.brief for s in steps):
        lines += ["", "The commands of the runs listed by name are in `metadata.json`."]
    split_seed = cfg.get("split_seed", meta.extra.get("split", {}).get("seed", "n/a"))
    members = meta.extra.get("ensemble") or []
    if members:       # each member's own settings: the averaging itself has none
        seeds = ", ".join(f"member {i} seed {(m.get('train_config') or {}).get('seed', 'n/a')} "
                          f"({m.get('precision') or 'precision not recorded'})" for i, m in enumerate(members, 1))
        machines = machines_line(_member_machines(members))
        return lines + ["", f"Split seed {split_seed}; {seeds}; on {machines}; float32 as served"
                        + (f"; {total:.0f} minutes of training in all." if total else "."), ""]
    settings = (f"seed {cfg.get('seed', 'n/a')}, split seed {split_seed}, {meta.extra.get('precision', 'n/a')} "
                f"while training, on {machine_line(meta.extra.get('machine', {}), training=True)}")
    # the earlier runs of an --init chain may have run elsewhere: the settings are this run's
    settings = f"The last run: {settings}" if meta.extra.get("init") else settings[0].upper() + settings[1:]
    lines += ["", settings + "; float32 as served" + (f"; {total:.0f} minutes of training in all." if total else "."), ""]
    return lines


def _member_machines(members: list[dict]) -> list[dict]:
    """The machines an ensemble's members trained on, those of a member that is itself an ensemble included."""
    return [x for m in members for x in (_member_machines(m["members"]) if m.get("members")
                                          else [m.get("machine") or {}])]


def _recall_rules(rules, rows: dict[str, CheckRow]) -> list[str]:
    """The kept class recalls in a few words, with this model's figures: floors, then how far each may fall."""
    from bench.ship_rules import points

    def own(rule) -> str:
        row = rows.get(rule.check)
        return _pct(row.per_class_recall.get(rule.cls) if row else None, 1)

    out = [f"{r.cls} recall on {r.check} at least {r.at_least * 100:g} % ({own(r)})" for r in rules
           if r.at_least is not None]
    shown = {r.check for r in rules if r.at_least is not None}     # this model's figure given once
    falls = [r for r in rules if r.max_fall is not None]
    for cls, size in dict.fromkeys((r.cls, r.max_fall) for r in falls):
        where = " and ".join(r.check if r.check in shown else f"{r.check} ({own(r)})"
                             for r in falls if (r.cls, r.max_fall) == (cls, size))
        out.append(f"{cls} recall at most {points(size)} below this model's on {where}")
    return out


def _ship_rules(folder: Path, task: Task, rows: list[CheckRow], bench: dict) -> list[str]:
    from bench.ship_rules import FLOORS, model_size_mb, one_face_ms

    floor = FLOORS.get(task.name)
    if not floor:
        return []
    primary = next((r for r in rows if r.primary), None)
    name = f"{primary.dataset} {primary.split}" if primary else floor.benchmark_check
    checks = [f"{name} accuracy at least {_pct(floor.benchmark_min, 0)} (this model: "
              f"{_pct(primary.accuracy if primary else None, 2)})",
              f"`model.keras` under {floor.max_mb:g} MB ({model_size_mb(folder):.1f} MB)"]
    if floor.max_one_face_ms:
        checks.append(f"one face under {floor.max_one_face_ms:g} ms in `python -m bench` ({one_face_ms(bench)} ms)")
    checks += _recall_rules(floor.recalls, {r.name: r for r in rows})
    return ["## Ship rules", "",
            "A new model replaces this one when its worst-case balanced accuracy over the generalisation suite "
            "rises, it stays within these floors, and every choice was made on validation figures: "
            + "; ".join(checks) + ". The experiments behind this model, kept and rejected, are logged in "
            f"`docs/experiments/{task.name}.md` in the Grin repository.", ""]


def render_card(folder: str | Path) -> str:
    """The model card of a model folder, front matter included: what `training.hub push` uploads as README.md."""
    folder = Path(folder)
    meta = ModelMeta.load(folder)
    task = get_task(meta.task)
    gen = read_json(folder / "generalisation.json")
    rows = check_rows(folder, task, gen)
    bench = read_json(folder / "bench.json")
    body = [*_intro(folder, meta, task), *_use(meta, task, folder), *_data(meta, task), *_evaluation(rows, gen, task),
            *_calibration(folder, task), *_offset_curve(folder), *_speed(bench), *_limits(meta, task, rows, folder),
            *_training(folder, meta), *_ship_rules(folder, task, rows, bench)]
    curves, whose = curve_rows(folder)
    if curves:
        body += ["## Learning curves", "", *([f"Of {whose}.", ""] if whose else []),
                 f"![loss and accuracy per epoch]({CURVES_FILE})", ""]
    return front_matter(folder, meta, rows) + "\n" + "\n".join(body).rstrip() + "\n"


def write_card(folder: str | Path) -> list[Path]:
    """Write README.md (and the learning curves it shows) into the model folder."""
    from training.curves_png import learning_curves_png

    folder = Path(folder)
    (folder / CARD_FILE).write_text(render_card(folder))
    written = [folder / CARD_FILE]
    rows, _ = curve_rows(folder)
    if rows:
        (folder / CURVES_FILE).write_bytes(learning_curves_png(rows))
        written.append(folder / CURVES_FILE)
    return written


def _views(meta: ModelMeta) -> str:
    crops = len(meta.tta_crops)
    if not crops:
        return "the face and its mirror image are averaged" if meta.tta_flip else "one view of each face"
    views = (1 + crops) * (2 if meta.tta_flip else 1)
    return f"the face and {crops} corner crops (90 %){', each mirrored' if meta.tta_flip else ''}: {views} views averaged"


def _equalize_note(meta: ModelMeta) -> str:
    """How each crop's contrast is normalised, when it is."""
    mode = meta.preprocess.get("equalize", "none")
    return "" if mode == "none" else f", each crop contrast-equalised ({mode.upper()})"


def _equalize_use(meta: ModelMeta) -> str:
    """What an outside user must do to each crop's contrast, if anything."""
    if meta.preprocess.get("equalize", "none") != "clahe":
        return ""
    from core.preprocess import CLAHE_CLIP, CLAHE_TILE_PX

    return (f", contrast-equalised by OpenCV's CLAHE (clip limit {CLAHE_CLIP}, tiles of {CLAHE_TILE_PX} px; "
            "`core.preprocess.equalize` in Grin),")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.card", description=__doc__.splitlines()[0])
    p.add_argument("model", help="model folder (with model.keras and metadata.json)")
    p.add_argument("--write", action="store_true", help="write README.md (and learning_curves.png) into the folder; "
                                                        "without it the card is printed")
    p.add_argument("--check", action="store_true", help="exit 1 if the folder's README.md is not the card it would get")
    args = p.parse_args(argv)
    folder = Path(args.model)
    if not (folder / META_FILE).is_file():
        print(f"error: {folder}: no {META_FILE}, so it is not a model folder", file=sys.stderr)
        return 2
    if args.check:
        current = (folder / CARD_FILE).read_text() if (folder / CARD_FILE).is_file() else ""
        if current != render_card(folder):
            print(f"{folder / CARD_FILE} is out of date: run python -m training.card {folder} --write", file=sys.stderr)
            return 1
        return 0
    if args.write:
        for path in write_card(folder):
            print(f"wrote {path}")
        return 0
    sys.stdout.write(render_card(folder))
    return 0


if __name__ == "__main__":
    sys.exit(main())
