"""Choose a model's deblocking (a blur of heavily compressed faces only) on the validation suite:

`python -m bench.deblock --model <run> [--sigmas 0.7 1.0] [--max-drop 0.003] [--json out.json] [--write]`

Deblocking (`core.preprocess`, `PreprocessConfig.deblock`) blurs a face crop after its resize only when
the picture it was cut from shows JPEG's 8 px block grid (`jpeg_blockiness` at `DEBLOCK_GATE` or more),
so faces stored as cameras store them are cut as before. The suite's validation checks
(`bench.generalisation --split val`) are read with deblocking off and with each sigma, the model's own
decision rule throughout. The rule, written before any figure is read: a sigma is eligible when its
worst-case balanced accuracy (checks of at least MIN_N_WORST faces) is above the reading without
deblocking and no such check falls more than `--max-drop` below its own reading without it; the eligible
sigma with the highest worst case wins, a tie going to the smaller sigma; with none eligible deblocking
stays off. Test splits are never read.

`--write` puts the chosen sigma in the model's metadata.json (`preprocess.deblock`; 0 when none is
eligible) and records the rule, the command and the figures in its `extra.deblock_choice`.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from bench.generalisation import MIN_N_WORST
from core.fileio import write_json_atomic
from core.model import ModelMeta
from core.portable import portable_path
from core.preprocess import MAX_DEBLOCK
from core.runtime import quiet_command


class DeblockError(ValueError):
    """A choice that cannot be made; the message says why."""


@dataclass
class DeblockConfig:
    sigmas: tuple[float, ...] = (0.7, 1.0)
    max_drop: float = 0.003      # the most any check may lose against deblocking off

    def validate(self) -> None:
        if not self.sigmas or any(not 0 < s <= MAX_DEBLOCK for s in self.sigmas):
            raise DeblockError(f"each sigma must be in (0, {MAX_DEBLOCK:g}] px (got {list(self.sigmas)})")
        if not 0 <= self.max_drop < 1:
            raise DeblockError(f"max-drop is a balanced accuracy in [0, 1) (got {self.max_drop})")

    def rule(self) -> str:
        """The rule in words, as the model card quotes it."""
        sigmas = ", ".join(f"{s:g}" for s in self.sigmas)
        return (f"the highest validation-suite worst case among sigmas {sigmas} px, above the reading without "
                f"deblocking and with no check more than {self.max_drop * 100:.1f} points below its own reading "
                f"without it; ties to the smaller sigma (`python -m bench.deblock`)")


@dataclass
class DeblockRow:
    sigma: float                 # 0: deblocking off
    worst_balanced_accuracy: float
    worst_check: str
    largest_drop: float = 0.0    # the most any check lost against sigma 0
    largest_drop_check: str = ""
    eligible: bool = False
    balanced: dict[str, float] = field(default_factory=dict)


def counted(checks: list[dict]) -> dict[str, float]:
    """Balanced accuracy of each check large enough to count towards the worst case."""
    return {c["name"]: float(c["balanced_accuracy"]) for c in checks if c["n"] >= MIN_N_WORST}


def rows_from_readings(readings: dict[float, dict[str, float]], cfg: DeblockConfig) -> list[DeblockRow]:
    """Each sigma's row (sigma 0, the reading without deblocking, first) with the rule's eligibility."""
    cfg.validate()
    if 0.0 not in readings:
        raise DeblockError("the reading without deblocking (sigma 0) is missing: nothing to compare against")
    base = readings[0.0]
    if not base:
        raise DeblockError(f"no check of at least {MIN_N_WORST} faces was read")
    rows = []
    for sigma, bal in sorted(readings.items()):
        if set(bal) != set(base):
            raise DeblockError(f"sigma {sigma:g} was read on other checks than sigma 0")
        worst = min(bal, key=bal.get)
        drops = {k: base[k] - v for k, v in bal.items()}
        most = max(drops, key=drops.get)
        row = DeblockRow(sigma, bal[worst], worst, round(drops[most], 4), most, balanced=dict(bal))
        row.eligible = sigma > 0 and bal[worst] > min(base.values()) and drops[most] <= cfg.max_drop
        rows.append(row)
    return rows


def choose(rows: list[DeblockRow]) -> DeblockRow:
    """The eligible row with the highest worst case (ties: the smaller sigma), else the row without deblocking."""
    eligible = [r for r in rows if r.eligible]
    if not eligible:
        return next(r for r in rows if r.sigma == 0)
    return max(eligible, key=lambda r: (r.worst_balanced_accuracy, -r.sigma))


def format_rows(rows: list[DeblockRow], chosen: DeblockRow) -> str:
    lines = [f"{'sigma':>5} {'worst':>7}  {'worst check':<34} {'largest drop':>12}  {'on':<34}"]
    for r in rows:
        mark = " <- chosen" if r is chosen else ""
        note = "" if r.eligible or r.sigma == 0 else " (not eligible)"
        lines.append(f"{r.sigma:>5g} {r.worst_balanced_accuracy:>7.2%}  {r.worst_check:<34} "
                     f"{r.largest_drop * 100:>11.2f}p  {r.largest_drop_check:<34}{note}{mark}")
    return "\n".join(lines)


def main(argv=None) -> int:
    quiet_command(argv)
    from bench.generalisation import add_collection_arguments, collection_paths, run_suite
    from core.model import ModelError

    d = DeblockConfig()
    p = argparse.ArgumentParser(prog="python -m bench.deblock", description=__doc__.splitlines()[0])
    p.add_argument("--verbose", action="store_true", help="also show TensorFlow's own log lines and warnings")
    p.add_argument("--model", required=True, help="model folder (a run, or models/smile)")
    add_collection_arguments(p)
    p.add_argument("--sigmas", type=float, nargs="+", default=list(d.sigmas),
                   help="blur sigmas to try, px at the model's face size (default: %(default)s)")
    p.add_argument("--max-drop", type=float, default=d.max_drop,
                   help="the most any validation check may lose, as a fraction (default: %(default)s)")
    p.add_argument("--json", help="write every sigma's figures and the choice here")
    p.add_argument("--write", action="store_true", help="set the chosen sigma in the model's metadata.json")
    args = p.parse_args(argv)
    cfg = DeblockConfig(tuple(args.sigmas), args.max_drop)
    try:
        cfg.validate()
        meta = ModelMeta.load(Path(args.model))
        meta.validate()
        paths = collection_paths(args)
        own = meta.preprocess_config
        readings = {}
        for sigma in (0.0, *cfg.sigmas):
            print(f"reading the validation suite with deblocking {'off' if not sigma else f'sigma {sigma:g}'}",
                  file=sys.stderr, flush=True)
            result = run_suite(args.model, **paths, split="val", preprocess=replace(own, deblock=sigma))
            readings[sigma] = counted(result.as_dict()["checks"])
        rows = rows_from_readings(readings, cfg)
        chosen = choose(rows)
    except (DeblockError, ModelError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_rows(rows, chosen))
    print(f"chosen: {'off' if not chosen.sigma else f'sigma {chosen.sigma:g}'} (worst "
          f"{chosen.worst_balanced_accuracy:.2%} on {chosen.worst_check}); the model's own: {own.deblock:g}")
    command = "python -m bench.deblock " + " ".join(
        shlex.quote(a) for a in ["--model", portable_path(args.model), "--sigmas", *(f"{s:g}" for s in cfg.sigmas),
                                 "--max-drop", f"{cfg.max_drop:g}", "--write"])
    figures = {"rule": cfg.rule(), "config": asdict(cfg), "rows": [asdict(r) for r in rows], "chosen": asdict(chosen)}
    if args.json:
        write_json_atomic(Path(args.json), {"model": portable_path(args.model), **figures})
    if args.write:
        meta.preprocess = replace(own, deblock=chosen.sigma).to_dict()
        meta.extra["deblock_choice"] = {"sigma": chosen.sigma, "rule": cfg.rule(), "command": command,
                                        "val_suite_worst_balanced_accuracy": chosen.worst_balanced_accuracy,
                                        "val_suite_worst_check": chosen.worst_check,
                                        "val_suite_worst_without": next(r for r in rows if r.sigma == 0).worst_balanced_accuracy}
        meta.save(Path(args.model))
        print(f"wrote deblocking {chosen.sigma:g} to {Path(args.model) / 'metadata.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
