"""Load test on this machine: several browser webcam sessions and one training run on one Grin server.

  python -m bench.load_test [--sessions 4] [--json bench/results/load_test.json] [--window 30] [--no-training]

A real `streamlit run app.py` (localhost only), a real headless Chromium with `--sessions` separate
sessions (2 by default) whose fake camera plays ../shared/media/smile_video.mp4, and a training run
started through training.launcher (queued, lowered CPU priority) as the Training page starts it.
Measured per session from its own webcam page: processed frames per second (frames counted over the
window) and the frame callback's latency (median and p95 of the last frames), and the same from the
server's own log over the whole window, first with the sessions alone, then while the run trains;
then whether the run finished, how long it took, and its threads' nice value. The browser runs on the
same CPUs as the server, so the figures are pessimistic. Every loop here is bounded in time; nothing
leaves 127.0.0.1.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
sys.path.insert(0, str(REPO / "tests" / "browser"))   # the browser-test harness pieces
sys.path.insert(0, str(REPO / "tests"))

from server import CHROMIUM, chromium_args, start_server, stop_server  # noqa: E402

from core.portable import portable_command, portable_path  # noqa: E402


@dataclass
class Sample:
    t: float
    frames: int
    fps_shown: float
    latency_ms: float
    latency_p95_ms: float


def _metric(page, label: str) -> str:
    box = page.locator('[data-testid="stMetric"]').filter(has_text=label)
    return box.locator('[data-testid="stMetricValue"]').inner_text(timeout=10_000)


def sample(page) -> Sample:
    """This session's own figures, as its webcam page shows them."""
    lat = [float(v) for v in re.findall(r"[\d.]+", _metric(page, "Latency"))]
    return Sample(time.time(), int(_metric(page, "Frames processed")), float(_metric(page, "Frames per second")),
                  lat[0] if lat else 0.0, lat[1] if len(lat) > 1 else 0.0)


def start_camera(page, open_page: bool = True) -> None:
    """Open the webcam page (unless it is open) and press START; wait for annotated video."""
    from ui import goto_page

    if open_page:
        goto_page(page, "webcam")
    frame = page.frame_locator('iframe[title*="webrtc"]')
    frame.get_by_role("button", name=re.compile("^start$", re.I)).click()
    video = frame.locator("video")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if video.count() and video.first.evaluate("v => v.videoWidth > 0 && v.currentTime > 0.5"):
            return
        time.sleep(0.5)
    raise RuntimeError("no annotated video came back within 60 s")


def streaming(page) -> bool:
    """False once the webcam component is back to its START button (its stream ended)."""
    frame = page.frame_locator('iframe[title*="webrtc"]')
    return frame.get_by_role("button", name=re.compile("^start$", re.I)).count() == 0


def log_rows(log: Path, t0: float, t1: float) -> list[dict]:
    """The server's GRIN_WEBCAM_LOG lines (one per frame labelled, all sessions) between t0 and t1."""
    rows = []
    for line in log.read_text().splitlines() if log.is_file() else []:
        try:
            row = json.loads(line)
            if t0 <= float(row["t"]) <= t1:
                rows.append(row)
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            continue
    return rows


def per_stream(rows: list[dict], seconds: float) -> list[dict]:
    """Per stream (one per session), from the server's log: frames labelled a second, and the frame
    callback's median and p95 over all of them (the pages show the last 90 frames only)."""
    ms: dict[int, list[float]] = {}
    for row in rows:
        if "stream" in row and "ms" in row:
            ms.setdefault(int(row["stream"]), []).append(float(row["ms"]))
    return [{"stream": k, "frames": len(v), "fps": round(len(v) / seconds, 2),
             "latency_median_ms": round(float(np.median(v)), 1),
             "latency_p95_ms": round(float(np.percentile(v, 95)), 1)} for k, v in sorted(ms.items())]


def processed(rows: list[Sample]) -> int:
    """Frames a session processed over its samples (its counter restarts from 0 with a new stream)."""
    return sum(b.frames - a.frames if b.frames >= a.frames else b.frames for a, b in zip(rows, rows[1:]))


def summarize(samples: list[list[Sample]], drops: list[list], log: Path) -> dict:
    """Per session over the window: processed frames per second (its page's frame counter, over the
    time between its own first and last samples: the pages are read in turn) and the frame callback's
    latency as its page shows it (median and p95 of its last 90 frames), with the times its stream
    ended and was restarted; and all frames the server logged, as a cross-check."""
    t0, t1 = min(s[0].t for s in samples), max(s[-1].t for s in samples)
    out = []
    for rows, lost in zip(samples, drops):
        span = rows[-1].t - rows[0].t
        out.append({"seconds": round(span, 1), "frames": processed(rows),
                    "processed_fps": round(processed(rows) / span, 2) if span > 0 else 0.0,
                    "fps_shown_mean": round(sum(s.fps_shown for s in rows) / len(rows), 2),
                    "latency_median_ms": round(sorted(s.latency_ms for s in rows)[len(rows) // 2], 1),
                    "latency_p95_ms_max": round(max(s.latency_p95_ms for s in rows), 1),
                    "stream_ended_at_s": [round(t - t0, 1) if isinstance(t, float) else t for t in lost]})
    logged = log_rows(log, t0, t1)
    return {"sessions": out, "server_logged_fps_all_sessions": round(len(logged) / (t1 - t0), 2),
            "server_log_per_stream": per_stream(logged, t1 - t0)}


def busiest_processes(n: int = 6) -> list[str]:
    """What else was using the CPU (the figures depend on it)."""
    out = subprocess.run(["ps", "-eo", "pcpu,args", "--sort=-pcpu"], capture_output=True, text=True).stdout
    rows = [line.split() for line in out.splitlines()[1:n + 1]]
    return [f"{row[0]} {portable_command(row[1:])}"[:120] for row in rows if row]   # no machine's paths


def watch(pages, seconds: float, until=None, every: float = 2.0) -> tuple[list[list[Sample]], list[list]]:
    """Samples of every session, `every` seconds apart, for `seconds` (or until `until()` is true).
    A session whose stream ended is noted and restarted (pressing START, as a person would)."""
    out = [[sample(p)] for p in pages]
    drops: list[list] = [[] for _ in pages]
    end = time.monotonic() + seconds
    while time.monotonic() < end and not (until and until()):
        for p, rows, lost in zip(pages, out, drops):
            p.wait_for_timeout(every * 1000 / len(pages))
            if not streaming(p):
                lost.append(time.time())
                try:
                    start_camera(p, open_page=False)
                except Exception as exc:  # noted; the session then counts no frames until it streams again
                    lost.append(f"restart failed: {type(exc).__name__}")
            rows.append(sample(p))
    return out, drops


def thread_nice(pid: int) -> list[int]:
    """The nice value of every thread of a process (field 19 of /proc/PID/task/TID/stat)."""
    values = []
    for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        try:
            values.append(int(stat.read_text().rsplit(")", 1)[1].split()[16]))
        except (OSError, IndexError, ValueError):
            pass
    return sorted(set(values))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.load_test", description=__doc__.splitlines()[0])
    p.add_argument("--json", default="bench/results/load_test.json", help="write the figures here (default: %(default)s)")
    p.add_argument("--sessions", type=int, default=2, help="browser sessions, each its own webcam stream (default: 2)")
    p.add_argument("--window", type=float, default=30.0, help="seconds of measurement with the sessions alone")
    p.add_argument("--no-training", action="store_true", help="measure the sessions alone, with no training run")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--per-class", type=int, default=300, help="training images per class")
    p.add_argument("--train-timeout", type=float, default=600.0)
    args = p.parse_args(argv)
    if not 1 <= args.sessions <= 8 or args.window <= 0:
        print("error: --sessions must be 1 to 8 and --window positive", file=sys.stderr)
        return 2
    video = SHARED / "media" / "smile_video.mp4"
    if not video.is_file() or not Path(CHROMIUM).is_file():
        print(f"error: needs {video} (the fake camera) and {CHROMIUM}", file=sys.stderr)
        return 2

    from playwright.sync_api import sync_playwright

    from fake_camera import write_fake_camera
    from tiny_dataset import make_class_folders
    from training import launcher
    from training.config import TrainConfig
    from training.runs import Run

    tmp = Path(tempfile.mkdtemp(prefix="grin-load-"))
    runs = tmp / "runs"
    runs.mkdir()
    log = tmp / "webcam.jsonl"
    env = dict(os.environ, GRIN_ICE="none", GRIN_RUNS=str(runs), GRIN_HUB_DIR=str(tmp / "hub"),
               GRIN_CACHE=str(tmp / "cache"), GRIN_WEBCAM_LOG=str(log), PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1")
    os.environ.update({k: env[k] for k in ("GRIN_RUNS", "GRIN_CACHE")})   # the launcher's child inherits these
    camera = write_fake_camera(video, tmp / "camera.y4m")
    data = make_class_folders(tmp / "data", per_class=args.per_class)
    result: dict = {"machine": {"cpu_count": os.cpu_count(), "load_average_before": os.getloadavg()},
                    "settings": {**vars(args), "json": portable_path(args.json)}, "sessions": args.sessions}
    server, url = start_server(env, tmp / "streamlit.log", timeout_s=90)
    run = None
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
                *chromium_args(camera.path), "--disable-background-timer-throttling",
                "--disable-renderer-backgrounding", "--disable-backgrounding-occluded-windows"])
            pages = []
            for _ in range(args.sessions):   # one context each: independent Streamlit sessions
                ctx = browser.new_context(base_url=url, viewport={"width": 1300, "height": 900},
                                          permissions=["camera"])
                ctx.set_default_timeout(90_000)
                pages.append(ctx.new_page())
            for page in pages:
                start_camera(page)
            pages[0].wait_for_timeout(5000)   # let the streams settle
            result["sessions_alone"] = summarize(*watch(pages, args.window), log)
            if args.no_training:
                result["sessions_streaming_at_the_end"] = [streaming(p) for p in pages]
                browser.close()
                return finish(result, tmp, args.json, ok=all(result["sessions_streaming_at_the_end"]))

            cfg = TrainConfig(task="smile", data=str(data), epochs=args.epochs, arch="compact",
                              faces="cropped", batch_size=32, precision="auto")
            t0 = time.monotonic()
            run = launcher.start(cfg, root=runs, name="load-test")
            deadline = time.monotonic() + args.train_timeout

            def state() -> str:
                return Run(run.path).status().get("state", "")

            while state() not in ("running", "finished", "failed", "stopped") and time.monotonic() < deadline:
                time.sleep(0.5)
            pid = Run(run.path).status().get("pid")
            nice = thread_nice(int(pid)) if pid else []
            during, drops = watch(pages, args.train_timeout, until=lambda: state() != "running")
            result["sessions_while_training"] = summarize(during, drops, log)
            result["machine"]["busiest_processes_while_training"] = busiest_processes()
            while state() in ("queued", "preparing", "running") and time.monotonic() < deadline:
                time.sleep(1)
            status = Run(run.path).status()
            metrics = Run(run.path).metrics()
            result["training"] = {
                "state": status.get("state"), "message": status.get("message"),
                "wall_seconds": round(time.monotonic() - t0, 1),
                "epochs_done": metrics[-1]["epoch"] if metrics else 0, "epochs": args.epochs,
                "epoch_seconds": [m.get("time") for m in metrics],
                "test_accuracy": Run(run.path).evaluation().get("accuracy"),
                "train_images": 2 * args.per_class, "thread_nice_values": nice,
            }
            result["sessions_streaming_at_the_end"] = [streaming(p) for p in pages]
            browser.close()
    finally:
        if run is not None and Run(run.path).status().get("state") in launcher.ACTIVE_STATES:
            launcher.stop(run)
        stop_server(server)
    return finish(result, tmp, args.json, ok=result["training"]["state"] == "finished")


def finish(result: dict, tmp: Path, out: str, ok: bool) -> int:
    """Write the figures, print a line per session; 0 when the run (if any) finished and streams stayed up."""
    from core.fileio import write_json_atomic

    result["machine"]["load_average_after"] = os.getloadavg()
    result["server_log_tracebacks"] = (tmp / "streamlit.log").read_text().count("Traceback")
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out, result)
    print(summary(result))
    return 0 if ok else 1


def summary(result: dict) -> str:
    lines = []
    for key in ("sessions_alone", "sessions_while_training"):
        part = result.get(key)
        if not part:
            continue
        lines.append(f"{key.replace('_', ' ')} ({result['sessions']} sessions, all frames the server logged "
                     f"{part['server_logged_fps_all_sessions']:.1f} fps):")
        for i, s in enumerate(part["sessions"], 1):
            lines.append(f"  session {i}: {s['processed_fps']:.1f} processed fps, callback latency median "
                         f"{s['latency_median_ms']:.0f} ms, p95 up to {s['latency_p95_ms_max']:.0f} ms"
                         + (f", stream ended at {s['stream_ended_at_s']} s" if s["stream_ended_at_s"] else ""))
        for s in part.get("server_log_per_stream", []):
            lines.append(f"  server log, stream {s['stream']}: {s['fps']:.1f} fps, callback latency median "
                         f"{s['latency_median_ms']:.0f} ms, p95 {s['latency_p95_ms']:.0f} ms over the window")
    t = result.get("training")
    if t:
        lines.append(f"training: {t['state']}, {t['epochs_done']}/{t['epochs']} epochs in {t['wall_seconds']:.0f} s, "
                     f"thread nice {t['thread_nice_values']}")
    lines.append(f"server tracebacks: {result['server_log_tracebacks']}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
