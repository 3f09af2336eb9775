"""The words of a model card that are not figures: intended use, out-of-scope use, the datasets, and the
limitations, into which the figures of the model's JSON files are set."""
from __future__ import annotations

from pathlib import Path

from training.card_data import CheckRow, eval_files

NO_GROUPS = ("Neither GENKI-4K nor FER-2013 labels age, sex or skin tone, so accuracy per group has not been "
             "measured: check it on the people you will serve before relying on it.")
OUT_OF_SCOPE = ("Judging what a person feels, their honesty, mood or mental health (a face's movement is not an "
                "emotion); decisions about people in hiring, schooling, policing, insurance or access; surveillance "
                "or identification (it does not know who anyone is); children and faces in profile, which the "
                "training data barely covers.")

DATASET_TEXT = {
    "genki4k": {"about": "face photos from the web, collected by the MPLab at UC San Diego and labelled smile or "
                         "not smile: many people, places and lighting conditions, mostly adults, mostly frontal."},
    "fer2013": {"about": "48x48 gray faces found by web image search for the ICML 2013 challenge, labelled with "
                         "seven expressions; PublicTest and PrivateTest are its official test halves.",
                "as_extra": "its training happy faces as smiles and {negatives} as no smiles (tightly cropped, "
                            "other people and framings than GENKI-4K's)."},
}


def fer_negatives_text(share: float) -> str:
    """What a smile model's FER-2013 no-smile faces are, from its `--fer-negatives` share."""
    if share >= 1:
        return "the six other expressions"
    return f"neutral faces and {100 * share:.0f} % of the five others" if share > 0 else "neutral faces"


def _pct(v: float) -> str:
    return f"{100 * v:.0f} %"


def _row(rows: list[CheckRow], *names: str) -> CheckRow | None:
    return next((r for r in rows if r.name in names), None)


def _primary(rows: list[CheckRow]) -> CheckRow | None:
    return next((r for r in rows if r.primary), None)


def _loose(rows: list[CheckRow]) -> list[str]:
    """Framing: a collection's loosely and tightly framed checks against its detector-framed one."""
    for r in rows:
        if r.name.endswith("/loose") or r.name.endswith("whole-photos"):
            base = _row(rows, r.name.rsplit("/", 1)[0]) if "/" in r.name else None
            tight = _row(rows, f"{base.name}/tight") if base else None
            return [f"Framing matters: on {base.name if base else r.name} accuracy is "
                    + (f"{_pct(base.accuracy)} with the detector's crops, " if base else "")
                    + f"{_pct(r.accuracy)} framed loosely" + (f", {_pct(tight.accuracy)} tightly" if tight else "")
                    + "; faces framed unlike the detector's box can lose more."]
    return []


def _smile_limits(rows: list[CheckRow], folder: Path) -> list[str]:
    out = [NO_GROUPS]
    rates = next((ev["smile_rate_by_expression"] for _, ev in eval_files(folder) if ev.get("smile_rate_by_expression")), None)
    fer = _row(rows, "fer2013-test", "fer2013-happy-vs-all-test")
    if rates:
        worst = sorted((k for k in rates if k not in ("happy", "neutral")), key=lambda k: -rates[k]["smile_rate"])[:2]
        owners = ["FER-2013's"] + ["its"] * (len(worst) - 1)
        out.append("Bared teeth read as smiles: " + " and ".join(
            f"{_pct(rates[k]['smile_rate'])} of {who} {k}" for who, k in zip(owners, worst))
            + f" test faces are called smiles (neutral: {_pct(rates['neutral']['smile_rate'])}).")
    elif fer and "non_smile" in fer.per_class_recall:
        out.append(f"Bared teeth read as smiles: {_pct(1 - fer.per_class_recall['non_smile'])} of FER-2013's "
                   "non-happy test faces (angry, disgust, fear, sad, surprise, neutral) are called smiles.")
    main = _primary(rows)
    if main and {"smile", "non_smile"} <= set(main.per_class_recall):
        out.append(f"On {main.dataset} {main.split} it misses {_pct(1 - main.per_class_recall['smile'])} of smiles and "
                   f"calls {_pct(1 - main.per_class_recall['non_smile'])} of neutral or other faces smiles; most errors "
                   "are faint or partial smiles near the label boundary, and very dark photos.")
    return out + _loose(rows) + [
        "The Haar detector sees frontal faces: in live video, faces turned or tilted beyond about 30 degrees get "
        "no label (photos get a deeper search, then the whole image as a last resort)."]


def _expression_limits(rows: list[CheckRow], folder: Path) -> list[str]:
    out = [NO_GROUPS.replace("Neither GENKI-4K nor FER-2013 labels", "FER-2013 does not label")]
    main = _primary(rows)
    if main and main.per_class_recall:
        weak = sorted(main.per_class_recall, key=main.per_class_recall.get)[:2]
        out.append(f"Weakest classes on {main.dataset} {main.split}: " + ", ".join(
            f"{k} ({_pct(main.per_class_recall[k])} recall)" for k in weak)
            + "; fear is confused with sad and surprise, sad with neutral.")
    support = next((ev.get("per_class", {}) for _, ev in eval_files(folder) if ev.get("per_class")), {})
    if "disgust" in support and "happy" in support:
        out.append(f"FER-2013's labels are noisy (people agree with them about 65 % of the time) and unbalanced: "
                   f"{support['disgust']['support']} disgust faces against {support['happy']['support']:,} happy in "
                   "its test split.")
    return out + _loose(rows) + [
        "Posed or exaggerated expressions are easier for it than everyday ones."]


def _default_limits(rows: list[CheckRow], folder: Path) -> list[str]:
    return ["Trained and evaluated only on the data above; how it does on other faces is unknown until measured "
            "(`python -m bench.generalisation`)."]


TASK_TEXT = {
    "smile": {
        "intended": "Telling whether a visible, roughly frontal face smiles, in photos and live video: camera "
                    "triggers and photo booths, counting smiles in a video, teaching and demos of expression "
                    "recognition. It gives a probability; the threshold can be moved (`--threshold`, the app's slider).",
        "out_of_scope": OUT_OF_SCOPE, "limits": _smile_limits},
    "expression": {
        "intended": "Labelling the apparent expression of a visible frontal face with one of FER-2013's seven "
                    "categories, with all seven probabilities, for demos, teaching, research baselines and media "
                    "analysis where a wrong label costs little.",
        "out_of_scope": OUT_OF_SCOPE + " The seven labels describe what a face shows to FER-2013's annotators, not "
                                       "what a person feels, and many everyday expressions fit none of them.",
        "limits": _expression_limits},
    "default": {"intended": "A model trained with Grin on the data named below; read its evaluation before use.",
                "out_of_scope": OUT_OF_SCOPE, "limits": _default_limits},
}
