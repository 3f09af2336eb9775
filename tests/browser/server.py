"""Starting and stopping a real `streamlit run app.py`, and the Chromium that drives it (tests, benchmarks)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"


def chromium_args(camera: Path | None = None) -> list[str]:
    """Headless Chromium flags: camera allowed without asking, fake devices (`camera`: a looping .y4m)."""
    args = ["--headless=new", "--no-sandbox", "--disable-gpu", "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"]
    return args + ([f"--use-file-for-fake-video-capture={camera}"] if camera else [])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def start_server(env: dict, log: Path, timeout_s: float = 60.0) -> tuple[subprocess.Popen, str]:
    """Start the app headless, with no file watcher, on a free port of 127.0.0.1; wait until it is
    healthy. Returns the process (its own process group) and the base URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
           "--server.fileWatcherType", "none", "--server.port", str(port), "--server.address", "127.0.0.1",
           "--browser.gatherUsageStats", "false"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    t0 = time.monotonic()
    while not healthy(url):
        if proc.poll() is not None or time.monotonic() - t0 > timeout_s:
            stop_server(proc)
            raise RuntimeError(f"streamlit did not start (exit {proc.poll()}):\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
    return proc, url


def stop_server(proc: subprocess.Popen) -> None:
    """SIGTERM the server by its PID (then SIGKILL if it hangs)."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
