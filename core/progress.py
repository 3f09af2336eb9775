"""A one-line progress bar with an ETA for long command lines, on stderr and only when it is a terminal."""
from __future__ import annotations

import sys
import time
from typing import TextIO


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds + 0.5), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}" if m >= 60 else f"{m}:{s:02d}"


class ProgressBar:
    """`bar(done, total)` redraws the line (at most every `interval` s); `close()` ends it. Off (nothing is
    written) when the stream is not a terminal, so logs and pipes get only the command's own lines."""

    def __init__(self, label: str, stream: TextIO | None = None, interval: float = 0.2,
                 enabled: bool | None = None):
        self.label, self.stream, self.interval = label, stream or sys.stderr, interval
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.t0 = self.last = time.monotonic()
        self.drawn, self.shown, self.started = False, (-1, -1), False

    def line(self, done: int, total: int, now: float | None = None) -> str:
        """The text of the bar: label, bar, done/total, elapsed and the time left at the rate so far."""
        elapsed = (time.monotonic() if now is None else now) - self.t0
        frac = min(1.0, done / total) if total else 0.0
        eta = elapsed * (1 - frac) / frac if frac else 0.0
        bar = "#" * int(24 * frac) + "-" * (24 - int(24 * frac))
        left = f"ETA {_clock(eta)}" if frac < 1 else "done"
        return f"{self.label} [{bar}] {done}/{total} {_clock(elapsed)} {left}"

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if not self.started:   # the clock starts with the work, not with the set-up before it
            self.t0, self.started = now, True
        if not self.enabled or (done, total) == self.shown or (now - self.last < self.interval and done < total):
            return
        self.last, self.shown = now, (done, total)
        self.stream.write("\r" + self.line(done, total, now) + "\033[K")
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()
        self.drawn, self.shown, self.started = False, (-1, -1), False
