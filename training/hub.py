"""Share models through the Hugging Face Hub: push a finished run, pull a model by repository id.

  python -m training.hub push RUN_DIR OWNER/NAME [--private] [--message TEXT] [--dry-run OUT_DIR]
  python -m training.hub pull OWNER/NAME [--revision REV] [--task smile|expression]
  python -m training.hub list [--task smile|expression]
  python -m training.hub status

The token comes from $HF_TOKEN or the one `hf auth login` saved; it is never a command-line argument,
never written anywhere and never printed. Pulled models are checked (task registry, Keras safe mode)
in the Hub's own cache, then copied to `core.registry.hub_root()/OWNER/NAME[@REV]`, where the app's
model picker finds them.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import shutil
import sys
import tempfile
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.fileio import read_json, write_json_atomic
from core.model import META_FILE, MODEL_FILE, ModelError, ModelMeta
from core.registry import hub_root, list_models
from core.runtime import quiet_command

CARD_FILE, CURVES_FILE, PROVENANCE_FILE = "README.md", "learning_curves.png", "hub.json"
RUN_FILES = (MODEL_FILE, META_FILE, "eval.json", "metrics.jsonl", "config.json")  # pushed as they are
CARD_SOURCES = ("eval_*.json", "metrics_*.jsonl", "generalisation.json", "bench.json", "explain.json")  # if present
PULL_FILES = (*RUN_FILES, CARD_FILE, CURVES_FILE)                               # nothing else is fetched
MAX_MODEL_BYTES = 200 * 2**20
PUSHABLE_STATES = ("finished", "stopped", "")   # "" : a model folder that is not a run (e.g. bundled)
_install_lock = threading.Lock()


class HubError(RuntimeError):
    """A push or pull that cannot be done; the message says why (and never contains the token)."""


@dataclass(frozen=True)
class HubStatus:
    reachable: bool
    message: str
    endpoint: str


@dataclass(frozen=True)
class PushResult:
    repo_id: str
    url: str
    commit: str
    files: tuple[str, ...]


@dataclass(frozen=True)
class PullResult:
    repo_id: str
    revision: str
    commit: str
    path: Path          # the installed folder under hub_root()
    meta: ModelMeta
    export_error: str = ""   # why no ONNX export could be made for it (Keras serves it then); "" when made

    @property
    def served_by(self) -> str:
        """A phrase for what will serve it."""
        from core.model import RUNTIME_TITLES, export_runtime

        return (f"Keras (its ONNX export failed: {self.export_error})" if self.export_error
                else RUNTIME_TITLES[export_runtime()])


def effective_token(entered: str | None = None, env: dict[str, str] | None = None) -> str | bool | None:
    """The token for one app session: the one typed in; else, running locally, the library's default
    ($HF_TOKEN or `hf auth login`); on a hosted Space (SPACE_ID set) none, so that visitors never act
    with the Space owner's secret."""
    env = os.environ if env is None else env
    if entered and entered.strip():
        return entered.strip()
    return False if env.get("SPACE_ID") else None


def check_repo_id(repo_id: str) -> str:
    repo_id = (repo_id or "").strip()
    if not re.fullmatch(r"[A-Za-z0-9][\w.-]{0,95}/[\w.-]{1,96}", repo_id) or ".." in repo_id \
            or repo_id.endswith((".", "-")):
        raise HubError(f"'{repo_id}' is not a repository id: write it as owner/name (letters, digits, - _ .)")
    return repo_id


def check_model_folder(folder: str | Path, task: str | None = None, load: bool = True,
                       label: str | None = None) -> ModelMeta:
    """Refuse anything but a Grin model: both files, metadata matching the task registry, and a
    model.keras that Keras loads in safe mode with the shapes its metadata promises."""
    folder = Path(folder)
    label = label or str(folder)
    for name in (MODEL_FILE, META_FILE):
        if not (folder / name).is_file():
            raise HubError(f"{label}: no {name}, so it is not a Grin model")
    size = (folder / MODEL_FILE).stat().st_size
    if size > MAX_MODEL_BYTES:
        raise HubError(f"{label}: {MODEL_FILE} is {size / 2**20:.0f} MB, over the {MAX_MODEL_BYTES // 2**20} MB limit")
    try:
        meta = ModelMeta.load(folder)
        meta.validate()
    except ModelError as exc:
        raise HubError(f"{label}: refused: {exc}") from None
    if task and meta.task != task:
        raise HubError(f"{label}: it is a '{meta.task}' model, not a '{task}' model")
    if load:
        from core.model import Classifier

        try:
            clf = Classifier(folder, warm_up=False, runtime="keras")   # Keras itself, in safe mode
            probs = clf.predict(np.zeros((1, *clf.preprocess.input_shape), np.uint8))
        except ModelError as exc:
            raise HubError(f"{label}: refused: {exc}") from None
        if probs.shape != (1, clf.task.n_classes) or not np.all(np.isfinite(probs)):
            raise HubError(f"{label}: refused: the model does not output {clf.task.n_classes} probabilities")
    return meta


# ---------------------------------------------------------------------------------------------- push

def check_pushable(folder: Path) -> None:
    state = read_json(folder / "status.json").get("state", "")
    if state not in PUSHABLE_STATES:
        raise HubError(f"{folder.name}: the run is {state}; only finished or stopped runs can be pushed")


def push_files(folder: str | Path) -> dict[str, Path | bytes]:
    """What a push uploads: the model, its metadata, the JSON files its card's figures come from, the model
    card (`training.card`, the same text as a bundled model's README.md) and the learning curves."""
    from training.card import render_card
    from training.card_data import curve_rows
    from training.curves_png import learning_curves_png

    folder = Path(folder)
    check_pushable(folder)
    files: dict[str, Path | bytes] = {n: folder / n for n in RUN_FILES if (folder / n).is_file()}
    for pattern in CARD_SOURCES:
        files.update({p.name: p for p in sorted(folder.glob(pattern))})
    rows, _ = curve_rows(folder)
    if rows:
        files[CURVES_FILE] = learning_curves_png(rows)
    files[CARD_FILE] = render_card(folder).encode()
    return files


def write_push_files(folder: str | Path, out: str | Path) -> list[Path]:
    """Dry run: write what a push would upload into `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, src in push_files(folder).items():
        (out / name).write_bytes(src if isinstance(src, bytes) else src.read_bytes())
        written.append(out / name)
    return written


def push(folder: str | Path, repo_id: str, *, token: str | bool | None = None, private: bool | None = None,
         message: str | None = None, endpoint: str | None = None, load_check: bool = True) -> PushResult:
    """Create the model repository if needed and commit the run's files in one commit."""
    from huggingface_hub import CommitOperationAdd, HfApi

    repo_id = check_repo_id(repo_id)
    folder = Path(folder)
    check_pushable(folder)
    meta = check_model_folder(folder, load=load_check)
    files = push_files(folder)
    api = HfApi(endpoint=endpoint or default_endpoint(), token=token)
    try:
        url = api.create_repo(repo_id, private=private, exist_ok=True)
        ops = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=src if isinstance(src, bytes) else str(src))
               for name, src in files.items()]
        info = api.create_commit(repo_id, ops, commit_message=message or
                                 f"Grin {meta.task} model from run {folder.name}")
    except Exception as exc:  # the Hub client raises many types; each gets a clear sentence
        raise HubError(explain(exc, repo_id, token, "push")) from None
    return PushResult(repo_id, str(url), info.oid, tuple(sorted(files)))


# ---------------------------------------------------------------------------------------------- pull

def pulled_folder(repo_id: str, revision: str | None = None) -> Path:
    """Where a pulled model is installed: hub_root()/owner/name, or owner/name@revision."""
    owner, name = check_repo_id(repo_id).split("/")
    if revision and revision != "main":
        name += "@" + re.sub(r"[^\w.-]", "_", revision)
    return hub_root() / owner / name


def pull(repo_id: str, revision: str | None = None, *, task: str | None = None, token: str | bool | None = None,
         endpoint: str | None = None, cache_dir: str | Path | None = None,
         local_files_only: bool = False) -> PullResult:
    """Download a model into the Hub cache (or find it there when offline), check it, install it."""
    from huggingface_hub import snapshot_download

    repo_id = check_repo_id(repo_id)
    endpoint = endpoint or default_endpoint()
    if revision is not None and not revision.strip():
        revision = None
    try:
        snapshot = Path(snapshot_download(repo_id, revision=revision, allow_patterns=list(PULL_FILES),
                                          token=token, endpoint=endpoint, cache_dir=cache_dir or default_cache(),
                                          local_files_only=local_files_only))
    except Exception as exc:  # the Hub client raises many types; each gets a clear sentence
        raise HubError(explain(exc, repo_id, token, "pull", revision)) from None
    commit = snapshot.name
    label = f"{repo_id}@{revision or 'main'}"
    meta = check_model_folder(snapshot, task=task, label=label)
    path = _install(snapshot, pulled_folder(repo_id, revision), {
        "repo_id": repo_id, "revision": revision or "main", "commit": commit,
        "endpoint": endpoint, "pulled": dt.datetime.now().isoformat(timespec="seconds")})
    from core.export import ensure_export

    # exported here rather than fetched: the export is made from the checked model.keras by this machine's tools
    return PullResult(repo_id, revision or "main", commit, path, meta, ensure_export(path))


def _install(snapshot: Path, dest: Path, provenance: dict) -> Path:
    """Copy the checked files next to the hub root, then move them into place in one rename."""
    root = hub_root()
    staging = root.with_name(root.name + ".staging")   # outside hub_root: never listed half-copied
    staging.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="pull-", dir=staging))
    try:
        for name in PULL_FILES:
            if (snapshot / name).is_file():
                shutil.copyfile(snapshot / name, tmp / name)   # the cache holds symlinks to blobs
        write_json_atomic(tmp / PROVENANCE_FILE, provenance)
        dest.parent.mkdir(parents=True, exist_ok=True)
        with _install_lock:
            old = None
            if dest.exists():
                old = staging / f"old-{uuid.uuid4().hex}"
                os.rename(dest, old)
            os.rename(tmp, dest)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


def provenance(folder: str | Path) -> dict:
    """Where a pulled model came from (repo, revision, commit, when), or {} for other models."""
    return read_json(Path(folder) / PROVENANCE_FILE)


# -------------------------------------------------------------------------------------- status, errors

def default_endpoint() -> str:
    """$HF_ENDPOINT read now (the Hub client reads it once, at import), else the client's default.
    Passed explicitly on every call, so that every request of one push or pull goes to one place."""
    from huggingface_hub import constants

    return os.environ.get("HF_ENDPOINT", "").strip().rstrip("/") or constants.ENDPOINT


def default_cache() -> str:
    """The Hub client's cache folder: $HF_HUB_CACHE read now, else the client's default."""
    from huggingface_hub import constants

    return os.environ.get("HF_HUB_CACHE", "").strip() or constants.HF_HUB_CACHE


def hub_status(endpoint: str | None = None, timeout: float = 2.0) -> HubStatus:
    """Whether the Hub answers, within `timeout` seconds (offline mode answers at once)."""
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    url = endpoint or default_endpoint()
    if constants.is_offline_mode():
        return HubStatus(False, "The Hub is unreachable: offline mode is on (HF_HUB_OFFLINE=1); bundled, "
                                "local and already pulled models work", url)
    try:
        r = get_session().get(f"{url}/api/models", params={"limit": 1}, timeout=timeout)
    except Exception as exc:  # DNS, refused, timeout, TLS: all mean unreachable
        return HubStatus(False, f"The Hub at {url} is unreachable ({type(exc).__name__}); bundled, local "
                                "and already pulled models work", url)
    if r.status_code >= 500:
        return HubStatus(False, f"The Hub at {url} answers with HTTP {r.status_code}; try again later", url)
    return HubStatus(True, f"The Hub at {url} is reachable", url)


def explain(exc: Exception, repo_id: str, token, action: str, revision: str | None = None) -> str:
    """One clear sentence for a Hub client error, with any token removed."""
    from huggingface_hub import errors

    where = f"'{repo_id}'" + (f" at revision '{revision}'" if revision else "")
    if isinstance(exc, errors.RevisionNotFoundError):
        msg = f"{repo_id} has no revision '{revision}'"
    elif isinstance(exc, errors.GatedRepoError):
        msg = f"{repo_id} is gated: accept its conditions on the Hub, then use a token"
    elif isinstance(exc, errors.RepositoryNotFoundError):
        msg = f"no model repository {where} on the Hub (or it is private and no valid token was given)"
    elif isinstance(exc, errors.OfflineModeIsEnabled) or (
            isinstance(exc, errors.LocalEntryNotFoundError) and action == "pull"):
        msg = (f"{where} is not in the local cache, and the Hub is offline or unreachable"
               if action == "pull" else "offline mode is on (HF_HUB_OFFLINE=1): pushing needs the Hub")
    elif isinstance(exc, errors.HfHubHTTPError) and exc.response is not None:
        code = exc.response.status_code
        if code == 401:
            msg = f"the Hub refused the token (HTTP 401): {action} needs a valid token in HF_TOKEN or the form"
        elif code == 403:
            msg = f"the token may not {action} {where} (HTTP 403): use a token with write access to it"
        else:
            msg = f"the Hub answered HTTP {code} to the {action} of {where}: {_first_line(exc)}"
    elif isinstance(exc, errors.HTTPError):
        msg = f"the Hub is unreachable ({type(exc).__name__}): cannot {action} {where}"
    elif isinstance(exc, ValueError):
        msg = f"cannot {action} {where}: {_first_line(exc)}"
    else:
        msg = f"cannot {action} {where}: {type(exc).__name__}: {_first_line(exc)}"
    return redact(msg, token)


def redact(text: str, token) -> str:
    """`text` with the token (and anything shaped like a Hub token) replaced by ***."""
    if isinstance(token, str) and token:
        text = text.replace(token, "***")
    return re.sub(r"hf_[A-Za-z0-9]{8,}", "hf_***", text)


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


# ------------------------------------------------------------------------------------------------ CLI

def _list(task: str | None) -> None:
    entries = list_models(task)
    if not entries:
        print("no models")
    for e in entries:
        acc = e.meta.metrics.get("test_accuracy")
        src = provenance(e.path)
        origin = f"  {src['repo_id']}@{src['commit'][:8]}" if src else ""
        print(f"{e.source:8} {e.task:10} {e.name:40} "
              f"{'test ' + format(acc, '.1%') if acc is not None else 'no test figure':>14}  {e.path}{origin}")


def main(argv=None) -> int:
    quiet_command(argv)
    p = argparse.ArgumentParser(prog="python -m training.hub", description=__doc__.splitlines()[0],
                                epilog="Token: $HF_TOKEN or `hf auth login`. Offline: HF_HUB_OFFLINE=1.")
    p.add_argument("--verbose", action="store_true", help="also show TensorFlow's own log lines and warnings")
    sub = p.add_subparsers(dest="cmd", required=True)
    ps = sub.add_parser("push", help="push a finished run (or any model folder) to a model repository")
    ps.add_argument("run", help="run folder (or model folder) with model.keras and metadata.json")
    ps.add_argument("repo_id", help="owner/name")
    ps.add_argument("--private", action="store_true", help="create the repository private")
    ps.add_argument("--message", help="commit message")
    ps.add_argument("--dry-run", metavar="OUT_DIR", help="write the files that would be pushed here; no network")
    pl = sub.add_parser("pull", help="pull a model by repository id into the local cache and the model picker")
    pl.add_argument("repo_id", help="owner/name")
    pl.add_argument("--revision", help="branch, tag or commit (default: main)")
    pl.add_argument("--task", choices=("smile", "expression"), help="refuse models of another task")
    ls = sub.add_parser("list", help="bundled, local-run and pulled models with their test accuracy")
    ls.add_argument("--task", choices=("smile", "expression"))
    sub.add_parser("status", help="whether the Hub is reachable")
    args = p.parse_args(argv)
    try:
        if args.cmd == "push":
            if args.dry_run:
                check_model_folder(args.run, load=False)
                check_repo_id(args.repo_id)
                for f in write_push_files(args.run, args.dry_run):
                    print(f)
                return 0
            r = push(args.run, args.repo_id, private=args.private or None, message=args.message)
            print(f"pushed {len(r.files)} files to {r.url} (commit {r.commit[:10]}): {', '.join(r.files)}")
        elif args.cmd == "pull":
            r = pull(args.repo_id, args.revision, task=args.task)
            acc = r.meta.metrics.get("test_accuracy")
            print(f"pulled {r.repo_id}@{r.revision} (commit {r.commit[:10]}), a {r.meta.task} model"
                  + (f" with test accuracy {acc:.1%}" if acc is not None else "") + f", into {r.path}; "
                  f"served by {r.served_by}")
        elif args.cmd == "list":
            _list(args.task)
        else:
            st = hub_status()
            print(st.message)
            return 0 if st.reachable else 1
    except HubError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
