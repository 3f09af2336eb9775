"""Paths as the repository may record them: no machine's absolute paths in commands, metadata or results.

The known datasets become `<genki4k>` and `<fer2013>`, a path in the repository becomes relative to it,
one in the runs folder `<runs>/NAME`, one in ../shared beside it `<shared>/PATH`, and any other absolute
path `<elsewhere>/NAME`.
"""
from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

from core.registry import REPO, runs_root

DATASET_ENV = {"genki4k": "GRIN_DATA_GENKI4K", "fer2013": "GRIN_DATA_FER2013"}
ABSOLUTE = re.compile(r"^(/|[A-Za-z]:[\\/]|\\\\)")
_PLACEHOLDER = re.compile(r"^<[\w-]+>")


def _dataset_name(path: Path) -> str | None:
    """'genki4k' or 'fer2013' when `path` is one of them: by its configured or shared place, or its layout."""
    for name, env in DATASET_ENV.items():
        places = [REPO.parent / "shared" / "datasets" / name, *([Path(os.environ[env])] if os.environ.get(env) else [])]
        if any(path in (p.absolute(), p.resolve()) for p in places):
            return name
    if (path / "labels.txt").is_file() and (path / "files").is_dir():
        return "genki4k"
    if (path / "fer2013.csv").is_file():
        return "fer2013"
    return None


def _inside(path: Path, root: Path) -> str | None:
    """`path` relative to `root` (as given or with its links resolved), or None outside it."""
    for base in (Path(os.path.abspath(root)), root.resolve()):
        if path.is_relative_to(base):
            return path.relative_to(base).as_posix()
    return None


def portable_path(path: str | Path) -> str:
    """`path` written without this machine's folders (see the module's docstring); relative paths that
    are not a known dataset are kept as given."""
    text = str(path)
    if not text or _PLACEHOLDER.match(text):
        return text
    p = Path(os.path.abspath(Path(text).expanduser()))   # not resolved: a link in the repository stays in it
    name = _dataset_name(p)
    if name:
        return f"<{name}>"
    name = _dataset_name(p.parent) if p.suffix else None   # a file in a dataset folder (fer2013.csv)
    if name:
        return f"<{name}>/{p.name}"
    runs = _inside(p, runs_root())   # before the repository: the default runs folder lies inside it, yet is the user's own
    if runs is not None:
        return f"<runs>/{runs}" if runs != "." else "<runs>"
    rel = _inside(p, REPO)
    if rel is not None:
        return rel
    shared = _inside(p, REPO.parent / "shared")
    if shared is not None:
        return f"<shared>/{shared}"
    if not ABSOLUTE.match(text) and not text.startswith("~"):
        return text
    return f"<elsewhere>/{p.name}"


def portable_command(argv: list[str]) -> str:
    """A command line with every path-like argument (and --option=path value) made portable."""
    def one(arg: str) -> str:
        flag, eq, value = arg.partition("=")
        if eq and flag.startswith("--"):
            return f"{flag}={one(value)}"
        if "/" in arg or "\\" in arg or ABSOLUTE.match(arg):
            arg = portable_path(arg)
        return arg if _PLACEHOLDER.match(arg) else shlex.quote(arg)

    return " ".join(one(a) for a in argv)


def portable_paths(value):
    """A copy of a JSON-like value in which every absolute or ./, ../ path (value or key) is made portable."""
    if isinstance(value, dict):
        return {portable_paths(k): portable_paths(v) for k, v in value.items()}
    if isinstance(value, list):
        return [portable_paths(v) for v in value]
    if isinstance(value, str) and (ABSOLUTE.match(value) or value.startswith(("./", "../"))):
        return portable_path(value)     # a relative dataset path (../shared/datasets/fer2013) too
    return value
