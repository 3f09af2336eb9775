"""When a new model replaces the shipped one: its worst case over the generalisation suite rises, and it
stays within its task's floors (a held-out benchmark split, size on disk, speed; for expressions, calm faces
still read neutral, neither under 70 % nor more than a point below the shipped model).

`python -m bench.ship_rules --old models/smile/generalisation.json --new <run>/generalisation.json --model <run>`
prints the decision and its reasons; exit status 0 when the new model may ship, 1 when not.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path


def points(fraction: float) -> str:
    """A difference of rates in percentage points, in words ("1 point", "2.5 points")."""
    v = round(fraction * 100, 2)
    return f"{v:g} point" + ("" if v == 1 else "s")


@dataclass(frozen=True)
class RecallRule:
    """One class's recall on one suite check that a new model must keep: at least `at_least`, and no more than
    `max_fall` below the shipped model's (None: no such bound)."""

    check: str
    cls: str
    at_least: float | None = None
    max_fall: float | None = None


@dataclass(frozen=True)
class Floors:
    """What every shipped model of a task must keep, whatever else it gains."""

    benchmark_check: str          # the suite check holding the task's benchmark split
    benchmark_min: float          # its accuracy, at least
    max_mb: float                 # model.keras under this many megabytes
    max_one_face_ms: float | None  # `python -m bench` median for a one-face frame, under this (None: no floor)
    recalls: tuple[RecallRule, ...] = ()   # class recalls a new model keeps (calm faces read neutral)


# A still face in front of the webcam is what users see first: calm GENKI-4K faces must keep reading neutral.
CALM_FACES = (RecallRule("genki4k-test", "neutral", at_least=0.70, max_fall=0.01),
              RecallRule("genki4k-test/tight", "neutral", max_fall=0.01))
FLOORS = {
    "smile": Floors("genki4k-test", 0.94, 5.0, 15.0),
    "expression": Floors("fer2013-private-test", 0.70, 10.0, None, CALM_FACES),
}


def recall_of(suite: dict, check: str, cls: str) -> float | None:
    """A class's recall on a named check of a suite JSON (None: no such check or class)."""
    c = next((c for c in suite.get("checks", []) if c["name"] == check), None)
    value = (c or {}).get("per_class_recall", {}).get(cls)
    return None if value is None else float(value)


def floor_failures(task: str, suite: dict, model_mb: float, one_face_ms: float | None) -> list[str]:
    """Why a model breaks its task's floors (empty: it keeps them all)."""
    f = FLOORS[task]
    out = []
    check = next((c for c in suite.get("checks", []) if c["name"] == f.benchmark_check), None)
    if check is None:
        out.append(f"the suite has no {f.benchmark_check} check")
    elif check["accuracy"] < f.benchmark_min:
        out.append(f"{f.benchmark_check} accuracy {check['accuracy']:.2%} is under {f.benchmark_min:.0%}")
    if model_mb >= f.max_mb:
        out.append(f"model.keras is {model_mb:.1f} MB, not under {f.max_mb:g} MB")
    if f.max_one_face_ms is not None:
        if one_face_ms is None:
            out.append("no one-face speed measured (python -m bench)")
        elif one_face_ms >= f.max_one_face_ms:
            out.append(f"one face takes {one_face_ms:.1f} ms, not under {f.max_one_face_ms:g} ms")
    for r in f.recalls:
        value = recall_of(suite, r.check, r.cls)
        if value is None:
            out.append(f"the suite has no {r.cls} recall on {r.check}")
        elif r.at_least is not None and value < r.at_least:
            out.append(f"{r.cls} recall on {r.check} {value:.3f} is under {r.at_least:.2f}")
    return out


def recall_falls(task: str, old: dict, new: dict) -> list[str]:
    """Why `new` gives back too much of a kept recall against `old` (empty: none falls too far)."""
    out = []
    for r in FLOORS[task].recalls:
        before, after = recall_of(old, r.check, r.cls), recall_of(new, r.check, r.cls)
        if r.max_fall is not None and before is not None and after is not None \
                and before - after > r.max_fall + 1e-9:
            out.append(f"{r.cls} recall on {r.check} falls {before:.3f} -> {after:.3f}, more than {points(r.max_fall)}")
    return out


def may_ship(old: dict, new: dict, model_mb: float, one_face_ms: float | None) -> tuple[bool, list[str]]:
    """(whether `new` replaces `old`, the reasons): the worst case must rise, the floors hold and the kept
    recalls not fall too far."""
    reasons = floor_failures(new["task"], new, model_mb, one_face_ms) + recall_falls(new["task"], old, new)
    worst_old, worst_new = old.get("worst_balanced_accuracy"), new.get("worst_balanced_accuracy")
    if worst_new is None or worst_old is None:
        reasons.append("a suite without a worst case")
    elif worst_new <= worst_old:
        reasons.append(f"worst balanced accuracy {worst_new:.2%} ({new.get('worst_check')}) does not rise above "
                       f"{worst_old:.2%} ({old.get('worst_check')})")
    return not reasons, reasons


def model_size_mb(folder: str | Path) -> float:
    return (Path(folder) / "model.keras").stat().st_size / 1e6


def one_face_ms(bench: dict) -> float | None:
    """The one-face frame's median from a `python -m bench` JSON."""
    one = bench.get("pipeline_ms", {}).get("one_face")
    return float(one["median"]) if isinstance(one, dict) and "median" in one else None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.ship_rules", description=__doc__.splitlines()[0])
    p.add_argument("--old", required=True, help="the shipped model's generalisation JSON")
    p.add_argument("--new", required=True, help="the candidate's generalisation JSON")
    p.add_argument("--model", required=True, help="the candidate's model folder (for its size)")
    p.add_argument("--bench", help="the candidate's `python -m bench --json` output (for its speed)")
    args = p.parse_args(argv)
    try:
        old, new = json.loads(Path(args.old).read_text()), json.loads(Path(args.new).read_text())
        speed = one_face_ms(json.loads(Path(args.bench).read_text())) if args.bench else None
        ok, reasons = may_ship(old, new, model_size_mb(args.model), speed)
    except (OSError, ValueError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("ship" if ok else "do not ship")
    for r in reasons:
        print(f"- {r}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
