"""What a model card says, read from the model folder's JSON files: evaluation rows, lineage, machine, and
the task's and datasets' own words (intended use, limits) that the figures are set into."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
import re
from pathlib import Path

from core.fileio import read_json, read_jsonl
from core.model import ModelMeta
from core.tasks import Task
from bench.ship_rules import FLOORS

DATASETS = {"genki4k": "GENKI-4K", "fer2013": "FER-2013", "folders": "class folders", "media": "posed photos"}
SPLITS = {"private_test": "PrivateTest", "public_test": "PublicTest", "test": "test", "val": "validation",
          "all": "all images"}
PRIMARY_EVAL = {"smile": ("genki4k", "test", "auto"), "expression": ("fer2013", "private_test", "auto")}
MIN_N = 50   # as bench.generalisation: smaller checks are shown but too noisy to decide on


@dataclass
class CheckRow:
    """One line of the evaluation table."""

    name: str
    dataset: str
    dataset_id: str
    split: str
    n: int
    accuracy: float
    balanced_accuracy: float
    per_class_recall: dict[str, float] = field(default_factory=dict)
    roc_auc: float | None = None
    note: str = ""
    in_index: bool = False      # listed in the front matter's model-index
    primary: bool = False       # the benchmark the ship floor is set on


def dataset_title(name: str | None) -> str:
    key = (name or "").strip("<>")
    return DATASETS.get(key, key or "custom data")


def _dataset_id(title: str) -> str:
    return {v: k for k, v in DATASETS.items()}.get(title, title.lower().replace(" ", "-"))


def _from_suite(gen: dict, task: Task) -> list[CheckRow]:
    rows = []
    for c in gen.get("checks", []):
        whole = c.get("condition", "as is") == "as is"
        rows.append(CheckRow(c["name"], c["dataset"], _dataset_id(c["dataset"]), SPLITS.get(c["split"], c["split"]),
                             c["n"], c["accuracy"], c["balanced_accuracy"], c.get("per_class_recall", {}),
                             c.get("roc_auc"), c.get("note", ""), in_index=whole and c["n"] >= MIN_N,
                             primary=task.name in FLOORS and c["name"] == FLOORS[task.name].benchmark_check))
    return rows


def _note(ev: dict) -> str:
    parts = []
    if ev.get("smile_rate_by_expression"):
        parts.append("FER-2013's six other expressions count as no smile")
    elif ev.get("skipped_classes"):
        parts.append("happy (smile) against neutral (no smile) faces only" if "angry" in ev["skipped_classes"]
                     else f"left out: {', '.join(ev['skipped_classes'])}")
    if ev.get("faces") == "whole":
        parts.append("the whole photo taken as the face (a loose crop)")
    return ", ".join(parts)


def eval_files(folder: Path) -> list[tuple[str, dict]]:
    """(check name, figures) of the folder's evaluations: eval_*.json (bundled models) or eval.json (a run)."""
    files = sorted(folder.glob("eval_*.json")) or ([folder / "eval.json"] if (folder / "eval.json").is_file() else [])
    return [(f.stem.removeprefix("eval_").replace("_", "-") if f.stem != "eval" else "test", read_json(f))
            for f in files]


def primary_eval(folder: Path, task: Task) -> tuple[str, dict]:
    """(name, figures) of the evaluation the ship floor and the calibration are read from."""
    evals = eval_files(folder)
    want = PRIMARY_EVAL.get(task.name)
    match = [e for e in evals if want and (e[1].get("dataset"), e[1].get("split"), e[1].get("faces", "auto")) == want]
    return (match or evals or [("", {})])[0]


def _from_evals(folder: Path, task: Task) -> list[CheckRow]:
    main, _ = primary_eval(folder, task)
    rows = []
    for name, ev in eval_files(folder):
        if "accuracy" not in ev:
            continue
        title = dataset_title(ev.get("dataset") or "folders")
        recall = {k: v["recall"] for k, v in ev.get("per_class", {}).items()}
        rows.append(CheckRow(name, title, _dataset_id(title), SPLITS.get(ev.get("split", "test"), ev.get("split", "")),
                             ev.get("n_images", 0), ev["accuracy"], ev.get("balanced_accuracy", 0.0), recall,
                             ev.get("roc_auc"), _note(ev), in_index=ev.get("faces", "auto") != "whole",
                             primary=name == main))
    return sorted(rows, key=lambda r: not r.primary)


def check_rows(folder: Path, task: Task, gen: dict) -> list[CheckRow]:
    """The evaluation table: the generalisation suite when it has run, else the evaluation files."""
    return _from_suite(gen, task) if gen.get("checks") else _from_evals(folder, task)


def worst_line(gen: dict, rows: list[CheckRow]) -> str:
    if gen.get("worst_check"):
        return (f"**Worst case**: {gen['worst_check']}, balanced accuracy {100 * gen['worst_balanced_accuracy']:.1f} % "
                f"(the lowest over checks of at least {gen.get('min_n_for_worst', MIN_N)} faces).")
    big = [r for r in rows if r.n >= MIN_N]
    if not big:
        return ""
    w = min(big, key=lambda r: r.balanced_accuracy)
    return (f"**Worst case** here: {w.name}, balanced accuracy {100 * w.balanced_accuracy:.1f} % "
            "(`python -m bench.generalisation` has not been run for this model).")


def eval_label(ev: dict) -> str:
    return f"{dataset_title(ev.get('dataset'))} {SPLITS.get(ev.get('split', ''), ev.get('split', ''))} ({ev.get('n_images', 0):,} faces)"


@dataclass
class Step:
    what: str
    command: str
    minutes: float | None
    brief: bool = False     # a card names it without its command (the runs before this model; in metadata.json)


def training_minutes(folder: Path, metrics_file: str = "metrics.jsonl") -> float | None:
    """Minutes of training a run's per-epoch metrics file records, or None without one."""
    rows = read_jsonl(folder / metrics_file)
    return sum(r.get("time", 0) for r in rows) / 60 if rows else None


def offsets_text(meta: ModelMeta) -> str:
    """'neutral +0.30': the prior correction's non-zero offsets (metadata `class_bias`), or ''."""
    return ", ".join(f"{n} {b:+.2f}" for n, b in zip(meta.class_names, meta.class_bias) if b)


def lineage(folder: Path, meta: ModelMeta) -> list[Step]:
    """The training steps that made the model, oldest first: its --init chain (metadata `init`), then itself;
    for an ensemble, each member's chain and the member, then the averaging; last, a prior correction."""
    prior = meta.extra.get("prior_correction") or {}
    fitted = [Step(f"a prior correction of its probabilities ({offsets_text(meta)})", prior.get("command")
                   or "not recorded", None)] if offsets_text(meta) else []
    return _made(folder, meta) + fitted


def _ensemble_steps(folder: Path, members: list[dict], average: str | None, command: str, prefix: str = "") -> list[Step]:
    """Each member's --init chain (by name) and the member, then the averaging; a member that is itself an
    ensemble (its records under `members`) by its own steps, named "member 1.2" and so on, by name."""
    steps, commands = [], {m.get("command") for m in members}
    for i, m in enumerate(members, 1):
        name = f"{prefix}{i}"
        if m.get("members"):
            inner = _ensemble_steps(folder, m["members"], m.get("average"), m.get("command") or "", f"{name}.")
            if prefix:    # an ensemble inside a member: one line, its runs by name (metadata.json has each)
                runs = _run_list(list(dict.fromkeys(n for n in _trained_runs(folder, m["members"]) if n)))
                minutes = sum(s.minutes for s in inner if s.minutes) or None
                what = "a weight average" if m.get("average") == "weights" else "a probability average"
                steps.append(Step(f"member {name}, {what} of earlier runs ({runs})", inner[-1].command, minutes,
                                  brief=True))
                continue
            steps += [replace(s, brief=True) for s in inner[:-1]]
            steps.append(replace(inner[-1], what=f"member {name}, {m.get('folder') or 'a model folder'}: "
                                                 f"{inner[-1].what}", brief=False))
            continue
        # (a member fine-tuned from another member: that one is listed once, as a member)
        steps += [replace(s, brief=True) for s in _init_chain(folder, m.get("init")) if s.command not in commands]
        steps.append(Step(f"member {name}, {m.get('folder') or 'a model folder'}", m.get("command") or "not recorded",
                          training_minutes(folder, m["metrics_file"]) if m.get("metrics_file") else None, brief=bool(prefix)))
    what = ("one network, the mean of their weights" if average == "weights"
            else "the ensemble, the mean of their probabilities")
    return steps + [Step(what, command or "not recorded", None)]


def _run_list(names: list[str], most: int = 6) -> str:
    """Run names for one line of the card: all of them, or for a long lineage the count, the first three and the last."""
    if len(names) <= most:
        return ", ".join(names)
    return f"{len(names)} runs: {', '.join(names[:3])}, ..., {names[-1]}"


def _run_name(command: str | None) -> str:
    """The run folder's name a training command wrote (its --out), or ""."""
    found = re.search(r"--out\s+(\S+)", command or "")
    return Path(found.group(1)).name if found else ""


def _trained_runs(folder: Path, members: list[dict]) -> list[str]:
    """The names of the runs behind an ensemble's members, oldest first: each member's --init chain, then the member;
    a member that is itself an ensemble, by its own members."""
    names = []
    for m in members:
        if m.get("members"):
            names += _trained_runs(folder, m["members"])
            continue
        names += [_run_name(s.command) for s in _init_chain(folder, m.get("init"))] + [_run_name(m.get("command"))]
    return names


def _made(folder: Path, meta: ModelMeta) -> list[Step]:
    if meta.extra.get("ensemble"):
        return _ensemble_steps(folder, meta.extra["ensemble"], meta.extra.get("average"), meta.command)
    chain = _init_chain(folder, meta.extra.get("init"))   # by name: every command is in metadata.json
    return [replace(s, brief=True) for s in chain] + [
        Step("this model", meta.command or "not recorded", training_minutes(folder, "metrics.jsonl"))]


def curve_rows(folder: Path) -> tuple[list[dict], str]:
    """The epochs a card's learning curves show and whose they are: the model's own run (metrics.jsonl), or for
    an ensemble its last member's run (the one trained last, its metrics file copied into the folder)."""
    rows = read_jsonl(folder / "metrics.jsonl")
    if rows:
        return rows, ""
    meta = ModelMeta.load(folder)
    members = meta.extra.get("ensemble") or []
    for i, m in reversed(list(enumerate(members, 1))):
        rows = read_jsonl(folder / m["metrics_file"]) if m.get("metrics_file") else []
        if rows:
            return rows, f"member {i}"
    return [], ""


def _init_chain(folder: Path, node) -> list[Step]:
    """The runs an --init chain went through, oldest first."""
    steps = []
    while isinstance(node, dict) and node.get("command"):
        minutes = node.get("minutes") or (training_minutes(folder, node["metrics_file"]) if node.get("metrics_file") else None)
        steps.append(Step(node.get("folder", "an earlier run"), node["command"], minutes))
        node = node.get("init")
    steps.reverse()
    return steps


def machine_line(m: dict, training: bool = False) -> str:
    """'2 CPU cores (model), no GPU' from a bench.json `machine` or a metadata `machine` entry."""
    if not m:
        return "a machine its metadata does not record" if training else "an unrecorded machine"
    cores = m.get("cpus") or m.get("cpu_count")
    cpu = m.get("cpu") or m.get("cpu_model")
    gpus = m.get("gpus")
    gpu = (f"{len(gpus) if isinstance(gpus, list) else gpus} GPU" if gpus else "no GPU")
    return f"{cores} CPU cores{f' ({cpu})' if cpu else ''}, {gpu}"


def machines_line(ms: list[dict]) -> str:
    """Several training machines in one phrase: those of the same cores and GPUs share it, their CPU models
    listed once each ('2 CPU cores (A; B), no GPU')."""
    groups: dict[tuple | None, list[str]] = {}
    for m in ms:
        gpus = m.get("gpus")
        key = (m.get("cpus") or m.get("cpu_count"), len(gpus) if isinstance(gpus, list) else gpus) if m else None
        names = groups.setdefault(key, [])
        cpu = m.get("cpu") or m.get("cpu_model")
        if cpu and cpu not in names:
            names.append(cpu)
    return " and ".join(machine_line(key and {"cpus": key[0], "gpus": key[1], "cpu": "; ".join(names)}, training=True)
                        for key, names in groups.items())
