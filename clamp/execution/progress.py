"""A plain-text progress bar for a study, on stderr (no extra dependency).

Why this file exists: a study runs for minutes to hours in several processes;
one line says how far it is -- runs done of total, sequences of the runs in
flight, elapsed time and an estimate of the time left.  On a terminal the line
is redrawn in place; otherwise (logs, CI) a line is printed every 30 seconds
and whenever a run ends.  ``quiet`` prints nothing.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _clock(seconds: float) -> str:
    s = int(max(seconds, 0))
    h, m = divmod(s // 60, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s % 60:02d}s"


class Progress:
    """Tracks packs in flight and finished runs, and draws the line.

    Args:
        name: the study's name.
        total_runs: runs selected (finished ones included).
        done_runs: runs already finished before this invocation.
        n_sequences: training length of one run.
        quiet: print nothing.
        stream: where to draw (stderr by default).
        planned: run-sequences this invocation will train (every pack, started or not), for the
            time-left estimate; without it the estimate covers the packs started so far.

    Example:
        >>> p = Progress(name="s", total_runs=2, done_runs=0, n_sequences=100, quiet=True)
        >>> p.start_pack(0, label="control", n_runs=2, start=0); p.update(0, 50); p.line().split(" | ")[0]
        's: 0/2 runs done'
    """

    def __init__(self, *, name: str, total_runs: int, done_runs: int, n_sequences: int, quiet: bool = False,
                 stream: TextIO | None = None, planned: float | None = None) -> None:
        self.name, self.total, self.done, self.n = name, total_runs, done_runs, n_sequences
        self.quiet = quiet
        self.stream = stream if stream is not None else sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.packs: dict[int, dict] = {}
        self.t0 = time.time()
        self.work_done = 0.0  # run-sequences trained in this invocation
        # run-sequences still to train: all of them when the caller knows (packs not yet started
        # count), else those of the packs started so far
        self.planned = planned is not None
        self.work_left = float(planned or 0.0)
        self._last_draw = 0.0
        self._width = 0

    def start_pack(self, job: int, *, label: str, n_runs: int, start: int, n: int | None = None) -> None:
        """A pack began; ``n`` is its runs' training length when the arm sets its own (default: the study's)."""
        n = self.n if n is None else n
        self.packs[job] = {"label": label, "n_runs": n_runs, "seen": start, "start": start, "live": n_runs, "n": n}
        if not self.planned:
            self.work_left += n_runs * (n - start)

    def update(self, job: int, seen: int, live: int | None = None) -> None:
        p = self.packs.get(job)
        if p is None:
            return
        step = max(seen - p["seen"], 0) * p["live"]
        self.work_done += step
        self.work_left = max(self.work_left - step, 0.0)
        p["seen"] = seen
        if live is not None and live < p["live"]:
            self.work_left = max(self.work_left - (p["live"] - live) * (p["n"] - seen), 0.0)
            p["live"] = live
        self.draw()

    def finish_pack(self, job: int, statuses: list[str]) -> None:
        p = self.packs.pop(job, None)
        if p is not None:
            self.work_left = max(self.work_left - p["live"] * (p["n"] - p["seen"]), 0.0)
        self.done += len(statuses)
        bad = [s for s in statuses if s != "finished"]
        if p is not None:
            self.message(f"{p['label']}: {len(statuses) - len(bad)} finished" + (f", {len(bad)} {'/'.join(sorted(set(bad)))}" if bad else ""))
        self.draw(force=True)

    def line(self) -> str:
        elapsed = time.time() - self.t0
        parts = [f"{self.name}: {self.done}/{self.total} runs done"]
        for p in self.packs.values():
            parts.append(f"{p['label']} {p['seen']:,}/{p['n']:,}")
        eta = ""
        if self.work_done > 0.02 * (self.work_done + self.work_left) and self.work_left > 0:
            eta = f", ~{_clock(self.work_left * elapsed / self.work_done)} left"
        parts.append(f"{_clock(elapsed)} elapsed{eta}")
        return " | ".join(parts)

    def draw(self, force: bool = False) -> None:
        if self.quiet:
            return
        now = time.time()
        if not force and now - self._last_draw < (0.5 if self.tty else 30.0):
            return
        self._last_draw = now
        text = self.line()
        if self.tty:
            self.stream.write("\r" + text.ljust(self._width))
            self._width = len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def message(self, text: str) -> None:
        """Print a line above the bar (not in quiet mode)."""
        if self.quiet:
            return
        if self.tty and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self._width = 0
        self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if not self.quiet and self.tty and self._width:
            self.stream.write("\n")
            self.stream.flush()
