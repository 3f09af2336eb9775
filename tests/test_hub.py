"""Push and pull through huggingface_hub's own code paths, against a stand-in Hub on 127.0.0.1.

A tiny real run is trained (synthetic class folders, 2 epochs), pushed with HfApi.create_repo +
create_commit, pulled with snapshot_download into a real Hub cache, pulled again from that cache with
HF_HUB_OFFLINE=1, checked against the task registry and Keras safe mode, and shown in list_models.
What only the real Hub can show (LFS/Xet transfer of big files, real accounts and permissions) is
not covered here: see the README's deploy section.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from core.model import META_FILE, MODEL_FILE, RUNTIME_TITLES, Classifier, ModelMeta, export_runtime
from core.onnx_runtime import ONNX_FILE, ONNX_META, sha256, stale_reason
from core.registry import list_models
from fake_hub import FakeHub
from training import hub

REPO = Path(__file__).resolve().parents[1]
TOKEN = "hf_GrinTestToken" + "x9Y8z7W6v5"   # a made-up token the tests look for in every output


def _run(args: list[str], env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=REPO, env={**os.environ, **(env or {})},
                          capture_output=True, text=True, timeout=timeout)


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"   # nothing listens once the socket is closed


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A finished run from `python -m training.train` on 2 x 40 synthetic 64x64 faces (about 30 s)."""
    tmp = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(0)
    for label in ("smile", "non_smile"):
        (tmp / "data" / label).mkdir(parents=True)
        for i in range(40):
            img = rng.integers(60, 120, (64, 64), dtype=np.uint8)
            if label == "smile":
                cv2.ellipse(img, (32, 40), (16, 10), 0, 0, 180, 250, 3)
            else:
                cv2.line(img, (16, 44), (48, 44), 250, 3)
            cv2.imwrite(str(tmp / "data" / label / f"{i:03d}.png"), img)
    out = tmp / "runs" / "tiny"
    r = _run(["-m", "training.train", "--task", "smile", "--data", str(tmp / "data"), "--out", str(out),
              "--epochs", "2", "--arch", "baseline", "--width", "8", "--faces", "cropped",
              "--precision", "float32", "--batch-size", "16"], env={"GRIN_CACHE": str(tmp / "cache")})
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads((out / "status.json").read_text())["state"] == "finished"
    return out


@pytest.fixture
def dirs(tmp_path, monkeypatch) -> dict[str, Path]:
    """An empty hub_root() and Hub cache for one test."""
    monkeypatch.setenv("GRIN_HUB_DIR", str(tmp_path / "hub"))
    return {"hub": tmp_path / "hub", "cache": tmp_path / "hf-cache", "tmp": tmp_path}


@pytest.fixture(scope="module")
def published(tiny_run):
    """A stand-in Hub holding alice/grin-tiny with the tiny run pushed once (token required to write)."""
    with FakeHub(token=TOKEN) as fh:
        result = hub.push(tiny_run, "alice/grin-tiny", token=TOKEN, endpoint=fh.url)
        yield fh, result


def _crops(n: int = 8) -> np.ndarray:
    return np.random.default_rng(1).integers(0, 255, (n, 64, 64, 1), dtype=np.uint8)


def _upload(fh: FakeHub, repo_id: str, folder: Path) -> None:
    """Put a folder on the stand-in Hub with the client's own upload_folder (no checks of ours)."""
    from huggingface_hub import HfApi

    api = HfApi(endpoint=fh.url, token=TOKEN)
    api.create_repo(repo_id, exist_ok=True)
    api.upload_folder(repo_id=repo_id, folder_path=str(folder), commit_message="test upload")


def test_learning_curves_png_draws_train_and_validation():
    from training.curves_png import TRAIN_RGB, VAL_RGB, learning_curves_png

    rows = [{"epoch": e, "loss": 1 / e, "val_loss": 1.2 / e, "accuracy": 1 - 0.4 / e,
             "val_accuracy": 0.9 - 0.4 / e} for e in range(1, 11)]
    png = learning_curves_png(rows)
    img = cv2.cvtColor(cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    assert img.shape == (260, 760, 3) and len(png) < 60_000
    plot_area = img[40:220]   # below the legend row

    def n_pixels(rgb):
        return int(np.all(np.abs(plot_area.astype(int) - rgb) < 30, axis=2).sum())

    assert n_pixels(TRAIN_RGB) > 500 and n_pixels(VAL_RGB) > 500
    empty = cv2.imdecode(np.frombuffer(learning_curves_png([]), np.uint8), cv2.IMREAD_COLOR)[40:220]
    assert not np.any(np.all(np.abs(cv2.cvtColor(empty, cv2.COLOR_BGR2RGB).astype(int) - TRAIN_RGB) < 30, axis=2))


def test_model_card_has_hub_metadata_figures_and_command(tiny_run):
    from huggingface_hub import ModelCard

    from training.card import render_card

    text = render_card(tiny_run)
    card = ModelCard(text)
    evaluation = json.loads((tiny_run / "eval.json").read_text())
    meta = ModelMeta.load(tiny_run)
    assert card.data.library_name == "keras" and "smile-recognition" in card.data.tags
    assert card.data.eval_results[0].metric_type == "accuracy"
    assert card.data.eval_results[0].metric_value == evaluation["accuracy"]
    assert meta.command and meta.command in text
    assert f"| {100 * evaluation['accuracy']:.1f} % | {100 * evaluation['balanced_accuracy']:.1f} % |" in text
    assert f"]({hub.CURVES_FILE})" in text
    assert "/tmp/" not in meta.command and "<elsewhere>/data" in meta.command   # no machine's path recorded
    assert hub.push_files(tiny_run)["README.md"] == text.encode()


def test_cards_say_how_an_equalised_models_crops_are_cut(tiny_run, tmp_path):
    """A model trained with --equalize clahe: its card tells outside users, and `python -m training.card`
    prints the same card; a plain model's card says nothing of it."""
    from training.card import render_card

    assert "CLAHE" not in render_card(tiny_run)
    folder = tmp_path / "clahe"
    shutil.copytree(tiny_run, folder)
    meta = json.loads((folder / "metadata.json").read_text())
    meta["preprocess"]["equalize"] = "clahe"
    (folder / "metadata.json").write_text(json.dumps(meta))
    assert "contrast-equalised by OpenCV's CLAHE (clip limit 2.0, tiles of 8 px" in render_card(folder)
    r = _run(["-m", "training.card", str(folder)])
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Each box is widened x1.2, each crop contrast-equalised (CLAHE), cut square" in r.stdout
    assert r.stdout == render_card(folder)


def test_push_commits_every_file_with_the_token_and_never_prints_it(published, tiny_run, capsys, caplog):
    fh, result = published
    files = fh.files("alice/grin-tiny")
    assert set(result.files) == {"README.md", "config.json", "eval.json", "learning_curves.png", "metadata.json",
                                 "metrics.jsonl", "model.keras"}
    assert set(result.files) <= set(files)
    for name in ("model.keras", "metadata.json", "eval.json", "metrics.jsonl"):
        assert files[name] == (tiny_run / name).read_bytes(), name
    assert cv2.imdecode(np.frombuffer(files["learning_curves.png"], np.uint8), cv2.IMREAD_COLOR) is not None
    commit = [q for q in fh.requests if q.method == "POST" and q.path.endswith("/commit/main")][-1]
    assert commit.headers["authorization"] == f"Bearer {TOKEN}"
    assert result.commit == fh.repos["alice/grin-tiny"].refs["main"]
    out = capsys.readouterr()
    assert TOKEN not in out.out + out.err + caplog.text


def test_pull_installs_a_checked_model_that_predicts_like_the_original(published, tiny_run, dirs):
    fh, _ = published
    main = fh.repos["alice/grin-tiny"].refs["main"]
    r = hub.pull("alice/grin-tiny", token=False, endpoint=fh.url, cache_dir=dirs["cache"])
    assert r.commit == main and r.path == dirs["hub"] / "alice" / "grin-tiny"
    assert (dirs["cache"] / "models--alice--grin-tiny" / "snapshots" / r.commit / MODEL_FILE).is_file()
    entries = [e for e in list_models("smile") if e.source == "hub"]
    assert [(e.name, e.path) for e in entries] == [("alice/grin-tiny", r.path)]
    assert hub.provenance(r.path)["commit"] == main
    x = _crops()   # exported on the way in: ONNX Runtime serves it, with the Keras model's probabilities
    fast = export_runtime()   # ONNX Runtime, or OpenVINO where the CPU computes bfloat16
    assert r.export_error == "" and r.served_by == RUNTIME_TITLES[fast] and stale_reason(r.path, r.path / MODEL_FILE) == ""
    assert fast in ("onnx", "openvino") and Classifier(r.path).runtime == fast and Classifier(tiny_run).runtime == "keras"
    np.testing.assert_allclose(Classifier(r.path, exact=True).predict(x), Classifier(tiny_run).predict(x), atol=1e-5)
    again = hub.pull("alice/grin-tiny", token=False, endpoint=fh.url, cache_dir=dirs["cache"])
    assert again.path == r.path and len([e for e in list_models() if e.source == "hub"]) == 1


def test_pull_offline_uses_the_cache_and_never_the_network(published, dirs):
    fh, _ = published
    main = fh.repos["alice/grin-tiny"].refs["main"]
    hub.pull("alice/grin-tiny", token=False, endpoint=fh.url, cache_dir=dirs["cache"])  # fills the cache
    shutil.rmtree(dirs["hub"])
    n_requests = len(fh.requests)
    env = {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(dirs["cache"]), "HF_ENDPOINT": fh.url,
           "GRIN_HUB_DIR": str(dirs["hub"]), "HF_TOKEN": TOKEN}
    r = _run(["-m", "training.hub", "pull", "alice/grin-tiny", "--task", "smile"], env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"pulled alice/grin-tiny@main (commit {main[:10]})" in r.stdout and f"served by {RUNTIME_TITLES[export_runtime()]}" in r.stdout
    assert (dirs["hub"] / "alice" / "grin-tiny" / MODEL_FILE).is_file()
    missing = _run(["-m", "training.hub", "pull", "alice/never-pulled"], env)
    assert missing.returncode == 2
    assert "'alice/never-pulled' is not in the local cache, and the Hub is offline or unreachable" in missing.stderr
    status = _run(["-m", "training.hub", "status"], env)
    assert status.returncode == 1 and "offline mode is on" in status.stdout
    listed = _run(["-m", "training.hub", "list", "--task", "smile"], env)
    assert "alice/grin-tiny" in listed.stdout and main[:8] in listed.stdout
    assert len(fh.requests) == n_requests, "offline mode sent requests"
    for p in (r, missing, status, listed):
        assert TOKEN not in p.stdout + p.stderr


def test_pull_by_revision_gets_that_commit(published, tiny_run, dirs):
    fh, first = published
    v2 = dirs["tmp"] / "v2"
    shutil.copytree(tiny_run, v2)
    meta = ModelMeta.load(v2)
    original = meta.threshold
    meta.threshold = round(original + 0.1, 2)
    meta.save(v2)
    second = hub.push(v2, "alice/grin-tiny", token=TOKEN, endpoint=fh.url, load_check=False)
    assert second.commit != first.commit
    latest = hub.pull("alice/grin-tiny", token=False, endpoint=fh.url, cache_dir=dirs["cache"])
    old = hub.pull("alice/grin-tiny", first.commit, token=False, endpoint=fh.url, cache_dir=dirs["cache"])
    assert latest.meta.threshold == meta.threshold and old.meta.threshold == original
    assert old.path.name == f"grin-tiny@{first.commit}" and old.commit == first.commit
    assert {e.name for e in list_models("smile") if e.source == "hub"} == {"alice/grin-tiny",
                                                                         f"alice/grin-tiny@{first.commit}"}


def _lambda_model(folder: Path, tiny_run: Path) -> None:
    import keras

    inp = keras.Input((64, 64, 1))
    x = keras.layers.Lambda(lambda t: t / 255.0)(inp)
    out = keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(x))
    keras.Model(inp, out).save(folder / MODEL_FILE)
    shutil.copy(tiny_run / META_FILE, folder / META_FILE)


@pytest.mark.parametrize("case, reason", [
    ("lambda", "cannot be loaded safely"),
    ("classes", "do not match task 'smile'"),
    ("input_size", "do not match its metadata"),
    ("no_model", "no model.keras, so it is not a Grin model"),
    ("other_task", "it is a 'expression' model, not a 'smile' model"),
])
def test_pull_refuses_what_is_not_a_safe_grin_model(published, tiny_run, dirs, case, reason):
    fh, _ = published
    folder = dirs["tmp"] / case
    folder.mkdir()
    if case == "lambda":
        _lambda_model(folder, tiny_run)
    elif case == "other_task":
        shutil.copytree(REPO / "models" / "expression", folder, dirs_exist_ok=True)
    else:
        shutil.copy(tiny_run / META_FILE, folder / META_FILE)
        if case != "no_model":
            shutil.copy(tiny_run / MODEL_FILE, folder / MODEL_FILE)
        meta = ModelMeta.load(folder)
        if case == "classes":
            meta.class_names = ["frown", "smile"]
        if case == "input_size":
            meta.preprocess["input_size"] = 48
        meta.save(folder)
    _upload(fh, f"mallory/{case}", folder)
    with pytest.raises(hub.HubError, match=reason):
        hub.pull(f"mallory/{case}", task="smile", token=False, endpoint=fh.url, cache_dir=dirs["cache"])
    assert not list(dirs["hub"].glob(f"**/{META_FILE}")) and not [e for e in list_models() if e.source == "hub"]


def test_pull_explains_missing_repositories_and_revisions(published, dirs):
    fh, _ = published
    with pytest.raises(hub.HubError, match="no model repository 'alice/nope' on the Hub"):
        hub.pull("alice/nope", token=False, endpoint=fh.url, cache_dir=dirs["cache"])
    with pytest.raises(hub.HubError, match="alice/grin-tiny has no revision 'v9'"):
        hub.pull("alice/grin-tiny", "v9", token=False, endpoint=fh.url, cache_dir=dirs["cache"])
    with pytest.raises(hub.HubError, match="is not a repository id"):
        hub.pull("../etc/passwd", token=False, endpoint=fh.url, cache_dir=dirs["cache"])
    t0 = time.monotonic()
    with pytest.raises(hub.HubError, match="not in the local cache, and the Hub is offline or unreachable"):
        hub.pull("alice/grin-tiny", token=False, endpoint=_closed_port_url(), cache_dir=dirs["cache"])
    assert time.monotonic() - t0 < 20


def test_push_refuses_unfinished_runs_and_bad_tokens(published, tiny_run, dirs):
    fh, _ = published
    running = dirs["tmp"] / "running"
    shutil.copytree(tiny_run, running)
    status = json.loads((running / "status.json").read_text())
    (running / "status.json").write_text(json.dumps({**status, "state": "running"}))
    with pytest.raises(hub.HubError, match="the run is running; only finished or stopped runs can be pushed"):
        hub.push(running, "alice/grin-tiny", token=TOKEN, endpoint=fh.url, load_check=False)
    wrong = "hf_WrongToken" + "1234567890"
    with pytest.raises(hub.HubError, match="refused the token") as err:
        hub.push(tiny_run, "alice/other", token=wrong, endpoint=fh.url, load_check=False)
    assert wrong not in str(err.value)
    with pytest.raises(hub.HubError, match="is not a repository id"):
        hub.push(tiny_run, "no slash", token=TOKEN, endpoint=fh.url)


def test_cli_push_dry_run_and_push_read_the_token_from_the_environment(published, tiny_run, dirs):
    fh, _ = published
    env = {"HF_TOKEN": TOKEN, "HF_ENDPOINT": fh.url, "HF_HUB_CACHE": str(dirs["cache"])}
    dry = _run(["-m", "training.hub", "push", str(tiny_run), "alice/cli", "--dry-run", str(dirs["tmp"] / "out")], env)
    assert dry.returncode == 0, dry.stderr[-2000:]
    assert {p.name for p in (dirs["tmp"] / "out").iterdir()} >= {"README.md", "learning_curves.png", "model.keras"}
    assert "alice/cli" not in fh.repos
    r = _run(["-m", "training.hub", "push", str(tiny_run), "alice/cli", "--message", "first model"], env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "pushed 7 files to" in r.stdout and "alice/cli" in fh.repos
    assert fh.files("alice/cli")["model.keras"] == (tiny_run / MODEL_FILE).read_bytes()
    assert TOKEN not in dry.stdout + dry.stderr + r.stdout + r.stderr


def test_hub_status_answers_fast_either_way(published):
    fh, _ = published
    assert hub.hub_status(fh.url).reachable
    t0 = time.monotonic()
    down = hub.hub_status(_closed_port_url(), timeout=2.0)
    assert not down.reachable and "unreachable" in down.message and time.monotonic() - t0 < 5


def test_effective_token_never_uses_the_space_secret():
    assert hub.effective_token("  hf_typed  ", {"SPACE_ID": "me/grin", "HF_TOKEN": "x"}) == "hf_typed"
    assert hub.effective_token("", {"SPACE_ID": "me/grin", "HF_TOKEN": "x"}) is False
    assert hub.effective_token(None, {"HF_TOKEN": "x"}) is None   # locally: the library reads HF_TOKEN / login


# ------------------------------------------------------------------ the Models page (a real script run)

@pytest.fixture
def page_env(tiny_run, dirs, monkeypatch):
    """The Models page with one finished run, an empty hub root and Hub cache; returns a runner."""
    from streamlit.testing.v1 import AppTest

    runs = dirs["tmp"] / "runs"
    shutil.copytree(tiny_run, runs / "tiny")
    monkeypatch.setenv("GRIN_RUNS", str(runs))
    monkeypatch.setenv("HF_HUB_CACHE", str(dirs["cache"]))
    monkeypatch.delenv("HF_TOKEN", raising=False)

    def open_page(endpoint: str) -> AppTest:
        monkeypatch.setenv("HF_ENDPOINT", endpoint)   # training.hub reads it on every call
        import streamlit as st

        st.cache_data.clear()   # the page caches the Hub's status for a minute
        at = AppTest.from_file(str(REPO / "pages" / "models.py"), default_timeout=120)
        at.run()
        assert not at.exception, at.exception
        return at

    return open_page


def _page_text(at) -> str:
    return "\n".join(str(e.value) for kind in ("markdown", "caption", "success", "error", "warning", "info")
                     for e in getattr(at, kind))


def _models_table(at):
    return at.dataframe[0].value


def test_models_page_without_the_hub_lists_local_models_and_says_so(page_env):
    t0 = time.monotonic()
    at = page_env(_closed_port_url())
    assert time.monotonic() - t0 < 60
    assert "is unreachable" in at.warning[0].value
    table = _models_table(at)
    assert {"smile", "expression", "tiny"} <= set(table["model"])
    assert set(table["source"]) == {"bundled with Grin", "trained here"}


def test_models_page_pulls_and_pushes_with_a_session_token(page_env, published, dirs):
    fh, _ = published
    at = page_env(fh.url)
    assert "is reachable" in _page_text(at)
    at.text_input(key="hub.token").input(TOKEN)
    pull = at.tabs[0]
    pull.text_input[0].input("alice/grin-tiny")
    pull.selectbox[0].select("smile")
    pull.button[0].click()
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    main = fh.repos["alice/grin-tiny"].refs["main"]   # other tests may have pushed after `published`
    assert f"Pulled alice/grin-tiny@main (commit {main[:10]})" in at.success[0].value
    assert f"served by {RUNTIME_TITLES[export_runtime()]}" in at.success[0].value
    table = _models_table(at)
    assert table[table["model"] == "alice/grin-tiny"]["source"].tolist() == ["pulled from the Hub"]
    push = at.tabs[1]
    push.text_input[0].input("bob/from-the-app")
    push.button[0].click()
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert "Pushed 7 files to" in at.success[0].value
    commit = [q for q in fh.requests if q.path == "/api/models/bob/from-the-app/commit/main"][-1]
    assert commit.headers["authorization"] == f"Bearer {TOKEN}"
    assert fh.repos["bob/from-the-app"].private
    assert TOKEN not in _page_text(at)


def test_models_page_on_a_space_never_pushes_with_the_server_token(page_env, published, monkeypatch):
    fh, _ = published
    monkeypatch.setenv("SPACE_ID", "someone/grin")
    monkeypatch.setenv("HF_TOKEN", TOKEN)         # the Space owner's secret (used for TURN)
    at = page_env(fh.url)
    n = len(fh.requests)
    at.tabs[1].text_input[0].input("someone/visitor-push")
    at.tabs[1].button[0].click()
    at.run()
    assert "Enter a Hugging Face token with write access" in at.error[0].value
    assert len(fh.requests) == n and "someone/visitor-push" not in fh.repos


def test_the_check_loads_model_keras_even_beside_a_current_export(tiny_run, tmp_path):
    """An ONNX export whose sidecar names the folder's model.keras (as a crafted upload could) does not spare that
    model.keras Keras's safe-mode load, although predictions would be served by the export without it."""
    folder = tmp_path / "crafted"
    folder.mkdir()
    _lambda_model(folder, tiny_run)
    shutil.copy(REPO / "models" / "smile" / ONNX_FILE, folder / ONNX_FILE)
    sidecar = json.loads((REPO / "models" / "smile" / ONNX_META).read_text())
    (folder / ONNX_META).write_text(json.dumps({**sidecar, "source_sha256": sha256(folder / MODEL_FILE)}))
    assert stale_reason(folder, folder / MODEL_FILE) == ""
    with pytest.raises(hub.HubError, match="cannot be loaded safely"):
        hub.check_model_folder(folder, task="smile")
