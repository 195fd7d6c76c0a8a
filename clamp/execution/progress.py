"""A study's progress on stderr: a tqdm bar on a terminal, plain lines in logs, nothing with ``--quiet``.

Why this file exists: a study runs for minutes to hours in several processes;
one line says how far it is -- runs done of total, the packs in flight and
their sequences, the rate in run-sequences per second, elapsed time and an
estimate of the time left.  On a terminal this is the tqdm bar people know
(tqdm comes with nnsight; imported only when a bar is drawn); when stderr is
not a terminal (logs, CI) a plain line is printed every 30 seconds and
whenever a pack ends, so logs stay readable (no carriage returns); ``quiet``
prints nothing.

The work unit is the run-sequence: a pack of 3 runs that trains 1,000
sequences does 3,000 of them, so packs of any width add up to one total.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO


def _clock(seconds: float) -> str:
    s = int(max(seconds, 0))
    h, m = divmod(s // 60, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s % 60:02d}s"


def _rate(per_second: float) -> str:
    for unit, div in (("M", 1e6), ("k", 1e3)):
        if per_second >= div:
            return f"{per_second / div:.1f}{unit} seq/s"
    return f"{per_second:.0f} seq/s"


class Progress:
    """Tracks packs in flight and finished runs, and draws the bar (or the plain line).

    Args:
        name: the study's name.
        total_runs: runs selected (finished ones included).
        done_runs: runs already finished before this invocation.
        n_sequences: training length of one run.
        quiet: print nothing.
        stream: where to draw (stderr by default).
        planned: run-sequences this invocation will train (every pack, started or not), for the
            time-left estimate; without it the estimate covers the packs started so far.
        bar: draw a tqdm bar (default: when ``stream`` is a terminal); False gives plain lines.
        every: seconds between plain lines (a line is also printed whenever a pack ends).

    Example:
        >>> p = Progress(name="s", total_runs=2, done_runs=0, n_sequences=100, quiet=True)
        >>> p.start_pack(0, label="control", n_runs=2, start=0); p.update(0, 50); p.line().split(" | ")[0]
        's: 0/2 runs done'
    """

    def __init__(self, *, name: str, total_runs: int, done_runs: int, n_sequences: int, quiet: bool = False,
                 stream: TextIO | None = None, planned: float | None = None, bar: bool | None = None,
                 every: float = 30.0) -> None:
        self.name, self.total, self.done, self.n = name, total_runs, done_runs, n_sequences
        self.quiet = quiet
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.use_bar = (self.tty if bar is None else bar) and not quiet
        self.every = every
        self.packs: dict[int, dict] = {}
        self.t0 = time.time()
        self.work_done = 0.0  # run-sequences trained in this invocation
        # run-sequences still to train: all of them when the caller knows (packs not yet started
        # count), else those of the packs started so far
        self.planned = planned is not None
        self.work_left = float(planned or 0.0)
        self._last_draw = 0.0
        self._bar: Any = None

    # --- bookkeeping
    def start_pack(self, job: int, *, label: str, n_runs: int, start: int, n: int | None = None) -> None:
        """A pack began; ``n`` is its runs' training length when the arm sets its own (default: the study's)."""
        n = self.n if n is None else n
        self.packs[job] = {"label": label, "n_runs": n_runs, "seen": start, "start": start, "live": n_runs, "n": n}
        if not self.planned:
            self.work_left += n_runs * (n - start)
        self.draw()

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

    # --- text
    def eta(self) -> float | None:
        """Seconds left at the rate so far, once 2% of the work is done (None before)."""
        elapsed = time.time() - self.t0
        if self.done >= self.total:
            return None
        if self.work_done > 0.02 * (self.work_done + self.work_left) and self.work_left > 0 and elapsed > 0:
            return self.work_left * elapsed / self.work_done
        return None

    def _packs_text(self) -> str:
        return " | ".join(f"{p['label']} {p['seen']:,}/{p.get('n', self.n):,}" for p in self.packs.values())

    def line(self) -> str:
        """The plain line: runs done, each pack's sequences, rate, elapsed and time left."""
        elapsed = time.time() - self.t0
        parts = [f"{self.name}: {self.done}/{self.total} runs done"]
        if self.packs:
            parts.append(self._packs_text())
        eta = self.eta()
        rate = f", {_rate(self.work_done / elapsed)}" if self.work_done and elapsed > 0 else ""
        parts.append(f"{_clock(elapsed)} elapsed{rate}" + (f", ~{_clock(eta)} left" if eta is not None else ""))
        return " | ".join(parts)

    # --- output
    def _tqdm(self) -> Any:
        if self._bar is None:
            from tqdm import tqdm  # lazily: only a terminal needs it

            self._bar = tqdm(total=max(self.work_done + self.work_left, 1.0), file=self.stream, unit="seq",
                             desc=f"{self.name}: {self.done}/{self.total} runs",
                             unit_scale=True, dynamic_ncols=True, mininterval=0.5, leave=True,
                             bar_format="{desc} {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} "
                                        "[{elapsed}<{remaining}, {rate_fmt}]{postfix}")
        return self._bar

    def draw(self, force: bool = False) -> None:
        if self.quiet:
            return
        if self.use_bar:
            bar = self._tqdm()
            bar.total = max(self.work_done + self.work_left, 1.0)
            bar.set_description_str(f"{self.name}: {self.done}/{self.total} runs", refresh=False)
            bar.set_postfix_str(self._packs_text(), refresh=False)
            bar.update(self.work_done - bar.n)  # refreshes at most every mininterval
            if force:
                bar.refresh()
            return
        now = time.time()
        if not force and now - self._last_draw < self.every:
            return
        self._last_draw = now
        self.stream.write(self.line() + "\n")
        self.stream.flush()

    def message(self, text: str) -> None:
        """Print a line above the bar (not in quiet mode)."""
        if self.quiet:
            return
        if self._bar is not None:
            self._bar.write(text, file=self.stream)
            return
        self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.refresh()
            self._bar.close()
            self._bar = None
