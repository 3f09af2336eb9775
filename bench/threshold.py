"""Choose a binary model's decision threshold on the validation suite:

`python -m bench.threshold --model <run> [--lo 0.30 --hi 0.60 --step 0.02] [--floor 0.94] [--json out.json] [--write]`

The suite's validation checks (`bench.generalisation --split val`: GENKI-4K's and FER-2013's validation
parts, as they are and under each condition, and the collections no model trains on) are read once, in
float32; every threshold of the sweep is then scored on each of them. The rule, written before any figure
is read: the threshold with the highest worst-case balanced accuracy (over the checks of at least
MIN_N_WORST faces) among those that keep the anchor check (GENKI-4K validation, as it is) at `--floor`
accuracy or more; a tie goes to the higher threshold (fewer false smiles). Test splits are never read: a
threshold chosen on them would be graded on the faces it was chosen by.

`--write` puts the chosen threshold in the model's metadata.json and records the rule, the command and
the figures in its `extra.threshold_choice` (the model card quotes them).
"""
from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from bench.generalisation import MIN_N_WORST, score
from core.decision import decide
from core.fileio import write_json_atomic
from core.model import ModelMeta
from core.portable import portable_path
from core.runtime import quiet_command
from core.tasks import Task

ANCHOR = "genki4k-val"
CHECK_TITLES = {ANCHOR: "GENKI-4K validation"}


class SweepError(ValueError):
    """A sweep that cannot be run or has no answer; the message says why."""


@dataclass
class SweepConfig:
    lo: float = 0.30
    hi: float = 0.60
    step: float = 0.02
    floor: float = 0.94          # the anchor check's accuracy every eligible threshold keeps
    anchor: str = ANCHOR

    def validate(self) -> None:
        if not 0 < self.lo <= self.hi < 1:
            raise SweepError(f"thresholds must satisfy 0 < lo <= hi < 1 (got lo {self.lo}, hi {self.hi})")
        if not 0 < self.step <= 0.5:
            raise SweepError(f"step must be in (0, 0.5] (got {self.step})")
        if not 0 <= self.floor <= 1:
            raise SweepError(f"floor is an accuracy in [0, 1] (got {self.floor})")

    @property
    def thresholds(self) -> list[float]:
        n = int(np.floor((self.hi - self.lo) / self.step + 1e-9)) + 1
        return [round(self.lo + k * self.step, 4) for k in range(n)]

    def rule(self) -> str:
        """The rule in words, as the model card quotes it."""
        anchor = CHECK_TITLES.get(self.anchor, self.anchor)
        return (f"the highest validation-suite worst case among thresholds {self.lo:.2f}-{self.hi:.2f} "
                f"(step {self.step:g}) keeping {anchor} accuracy at {self.floor * 100:.1f} % or more, "
                f"ties to the higher threshold (`python -m bench.threshold`)")


@dataclass
class ThresholdRow:
    threshold: float
    worst_balanced_accuracy: float
    worst_check: str
    anchor_accuracy: float
    eligible: bool


def sweep(readings: dict[str, tuple[np.ndarray, np.ndarray]], task: Task, cfg: SweepConfig) -> list[ThresholdRow]:
    """Each threshold of `cfg` scored on every reading (check name -> (true labels, probabilities))."""
    cfg.validate()
    if not task.is_binary:
        raise SweepError(f"a threshold decides only a two-class task; '{task.name}' takes the most probable class")
    if cfg.anchor not in readings:
        raise SweepError(f"no '{cfg.anchor}' check among the readings ({', '.join(readings) or 'none'}): "
                         "the floor cannot be checked")
    counted = {name: r for name, r in readings.items() if len(r[0]) >= MIN_N_WORST}
    rows = []
    for t in cfg.thresholds:
        bal = {name: score(y, p, decide(p, task, t), task)["balanced_accuracy"] for name, (y, p) in counted.items()}
        y, p = readings[cfg.anchor]
        anchor = float((decide(p, task, t) == y).mean()) if len(y) else 0.0
        worst = min(bal, key=bal.get) if bal else ""
        rows.append(ThresholdRow(t, bal.get(worst, 0.0), worst, round(anchor, 4), anchor >= cfg.floor))
    return rows


def choose(rows: list[ThresholdRow]) -> ThresholdRow:
    """The rule: the eligible row with the highest worst case; a tie, the higher threshold."""
    eligible = [r for r in rows if r.eligible]
    if not eligible:
        best = max(r.anchor_accuracy for r in rows) if rows else 0.0
        raise SweepError(f"no threshold keeps the anchor at the floor (its best accuracy here is {best:.2%})")
    return max(eligible, key=lambda r: (r.worst_balanced_accuracy, r.threshold))


def record(meta: ModelMeta, chosen: ThresholdRow, cfg: SweepConfig, command: str) -> dict:
    """What --write keeps in `extra.threshold_choice`; the run's own tuned threshold survives a second sweep."""
    before = meta.extra.get("threshold_choice") or {}
    return {"threshold_tuned_on_genki4k_val": before.get("threshold_tuned_on_genki4k_val", meta.threshold),
            "threshold": chosen.threshold, "rule": cfg.rule(), "command": command,
            "val_suite_worst_balanced_accuracy": chosen.worst_balanced_accuracy,
            "val_suite_worst_check": chosen.worst_check, "anchor_accuracy": chosen.anchor_accuracy}


def format_rows(rows: list[ThresholdRow], chosen: ThresholdRow, cfg: SweepConfig) -> str:
    """The sweep as a table, the chosen threshold marked."""
    lines = [f"{'threshold':>9} {'worst':>7}  {'worst check':<34} {cfg.anchor:>12}"]
    for r in rows:
        mark = " <- chosen" if r.threshold == chosen.threshold else ""
        below = "" if r.eligible else " (under the floor)"
        lines.append(f"{r.threshold:>9.2f} {r.worst_balanced_accuracy:>7.2%}  {r.worst_check:<34} "
                     f"{r.anchor_accuracy:>12.2%}{below}{mark}")
    return "\n".join(lines)


def main(argv=None) -> int:
    quiet_command(argv)
    from bench.generalisation import add_collection_arguments, collection_paths, run_suite
    from core.model import ModelError

    p = argparse.ArgumentParser(prog="python -m bench.threshold", description=__doc__.splitlines()[0])
    p.add_argument("--verbose", action="store_true", help="also show TensorFlow's own log lines and warnings")
    p.add_argument("--model", required=True, help="model folder of a two-class task (a run, or models/smile)")
    add_collection_arguments(p)
    d = SweepConfig()
    p.add_argument("--lo", type=float, default=d.lo, help="lowest threshold (default: %(default)s)")
    p.add_argument("--hi", type=float, default=d.hi, help="highest threshold (default: %(default)s)")
    p.add_argument("--step", type=float, default=d.step, help="step between thresholds (default: %(default)s)")
    p.add_argument("--floor", type=float, default=d.floor,
                   help="GENKI-4K validation accuracy every eligible threshold keeps (default: %(default)s)")
    p.add_argument("--json", help="write every threshold's figures and the choice here")
    p.add_argument("--write", action="store_true", help="set the chosen threshold in the model's metadata.json")
    args = p.parse_args(argv)
    cfg = SweepConfig(args.lo, args.hi, args.step, args.floor)
    try:
        cfg.validate()
        meta = ModelMeta.load(Path(args.model))
        task = meta.validate()
        if not task.is_binary:
            raise SweepError(f"{args.model} is a '{task.name}' model: the most probable class wins, no threshold to choose")
        paths = collection_paths(args)
        if paths["genki"] is None:
            raise SweepError(f"no GENKI-4K at {args.genki}: the floor is checked on its validation part")
        readings: dict = {}
        run_suite(args.model, **paths, split="val", readings=readings,
                  log=lambda m: print(m, file=sys.stderr, flush=True))
        rows = sweep(readings, task, cfg)
        chosen = choose(rows)
    except (SweepError, ModelError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_rows(rows, chosen, cfg))
    print(f"chosen: {chosen.threshold:.2f} (worst {chosen.worst_balanced_accuracy:.2%} on {chosen.worst_check}; "
          f"{cfg.anchor} {chosen.anchor_accuracy:.2%}); the model's own: {meta.threshold:.2f}")
    command = "python -m bench.threshold " + " ".join(
        shlex.quote(a) for a in ["--model", portable_path(args.model), "--lo", f"{cfg.lo:g}", "--hi", f"{cfg.hi:g}",
                                 "--step", f"{cfg.step:g}", "--floor", f"{cfg.floor:g}", "--write"])
    if args.json:
        write_json_atomic(Path(args.json), {"model": portable_path(args.model), "rule": cfg.rule(),
                                            "config": asdict(cfg), "rows": [asdict(r) for r in rows],
                                            "chosen": asdict(chosen), "model_threshold": meta.threshold})
    if args.write:
        meta.extra["threshold_choice"] = record(meta, chosen, cfg, command)
        meta.threshold = chosen.threshold
        meta.save(Path(args.model))
        print(f"wrote threshold {chosen.threshold:.2f} to {Path(args.model) / 'metadata.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
