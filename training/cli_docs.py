"""docs/cli.md, the command-line reference, generated from the commands' own argparse parsers:
`python -m training.cli_docs --write` (or `--check`: exit 1 when the committed file is out of date)."""
from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import os
import sys

from core.registry import REPO
from core.runtime import quiet

OUT = REPO / "docs" / "cli.md"
WIDTH = "100"   # argparse wraps help text to $COLUMNS: fixed, so the file is the same on every machine
COMMANDS: list[tuple[str, tuple[str, ...], str]] = [   # (module, subcommand, what it is for)
    ("core.predict", (), "label the faces in image and video files"),
    ("core.export", (), "export a model folder's model.keras to model.onnx, which the CPU runtimes serve"),
    ("training.quantize", (), "an int8 copy of a model's ONNX export, for CPUs without bfloat16 units"),
    ("training.train", (), "train a model (a run folder: config, status, metrics per epoch, model, evaluation)"),
    ("training.evaluate", (), "evaluate a model folder on a dataset's split"),
    ("bench", (), "time the whole pipeline on real frames"),
    ("bench.generalisation", (), "the generalisation suite: held-out splits, changed conditions, other collections"),
    ("bench.ship_rules", (), "whether a candidate model may replace the shipped one"),
    ("bench.threshold", (), "choose a smile model's decision threshold on the validation suite"),
    ("bench.offset_curve", (), "what moving one class's offset trades in an expression model's labels"),
    ("bench.calibration", (), "calibration to a calm face, on the calm faces a model misreads, and its cost"),
    ("training.prior", (), "fit class offsets (a prior correction) for an expression model"),
    ("bench.framing", (), "how the framing of face crops changes the expression model's accuracy"),
    ("bench.load_test", (), "several browser sessions and a training run on one server"),
    ("training.ensemble", (), "average models of one task into one model folder"),
    ("training.hub", ("push",), "push a run or model folder to the Hugging Face Hub"),
    ("training.hub", ("pull",), "pull a model from the Hub into the model picker"),
    ("training.hub", ("list",), "bundled, local and pulled models"),
    ("training.hub", ("status",), "whether the Hub answers"),
    ("training.card", (), "write a model folder's card (README.md) from its JSON files"),
    ("training.cli_docs", (), "regenerate this page"),
]
HEAD = """# Command-line reference

Generated from the parsers by `python -m training.cli_docs --write`; a test keeps it current. Run the commands
from the repository folder with `.venv/bin/python` (or an activated `.venv`). They print only their own lines;
`--verbose` (where TensorFlow loads) also shows TensorFlow's logs, and long steps draw a progress bar on a terminal.
Dataset folders are written `<genki4k>` and `<fer2013>`; the README says where to get them.
"""


def help_text(module: str, sub: tuple[str, ...]) -> str:
    """What `python -m MODULE [SUB] --help` prints, from the module's own parser."""
    mod = importlib.import_module("bench.__main__" if module == "bench" else module)
    out = io.StringIO()
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = WIDTH
    try:
        with contextlib.redirect_stdout(out):
            mod.main([*sub, "--help"])
    except SystemExit:
        pass
    finally:
        if old is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = old
    return out.getvalue().rstrip()


def render() -> str:
    """The whole page: a table of contents, then each command's help."""
    names = [" ".join(["python -m", module, *sub]) for module, sub, _ in COMMANDS]
    toc = [f"- [`{n}`](#{n.replace(' ', '-').replace('.', '')}): {what}" for n, (_, _, what) in zip(names, COMMANDS)]
    parts = [HEAD, *toc, ""]
    for name, (module, sub, what) in zip(names, COMMANDS):
        parts += [f"## {name}", "", what[0].upper() + what[1:] + ".", "", "```text", help_text(module, sub), "```", ""]
    return "\n".join(parts)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.cli_docs", description=__doc__.splitlines()[0])
    p.add_argument("--write", action="store_true", help=f"write {OUT.relative_to(REPO)}")
    p.add_argument("--check", action="store_true", help="exit 1 when the file differs from what the parsers give")
    args = p.parse_args(argv)
    quiet()   # building some commands' parsers loads TensorFlow
    text = render()
    if args.check:
        if not OUT.is_file() or OUT.read_text() != text:
            print(f"{OUT.relative_to(REPO)} is out of date: run python -m training.cli_docs --write", file=sys.stderr)
            return 1
        return 0
    if args.write:
        OUT.parent.mkdir(exist_ok=True)
        OUT.write_text(text)
        print(f"wrote {OUT.relative_to(REPO)}")
        return 0
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
