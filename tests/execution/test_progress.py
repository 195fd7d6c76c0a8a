"""The study's progress output: a tqdm bar on a terminal, plain lines in logs, nothing when quiet."""

from __future__ import annotations

import io
import sys

from clamp.execution.progress import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _drive(stream, **kw) -> Progress:
    p = Progress(name="demo", total_runs=4, done_runs=1, n_sequences=1000, stream=stream, planned=3000, every=0.0, **kw)
    p.start_pack(0, label="control s0-1", n_runs=2, start=0)
    p.t0 -= 10.0  # 10 s elapsed
    p.update(0, 500)
    p.message("a note")
    p.update(0, 1000)
    p.finish_pack(0, ["finished", "failed"])
    p.close()
    return p


def test_terminal_gets_a_tqdm_bar_with_packs_sequences_rate_and_eta():
    out = Terminal()
    _drive(out)
    text = out.getvalue()
    assert "\r" in text  # redrawn in place
    assert "demo: 1/4 runs" in text and "control s0-1 500/1,000" in text  # runs done, the pack and its sequences
    assert "seq/s" in text and "<" in text  # tqdm's rate and elapsed<remaining
    assert "3.00k/3.00k" in text or "3.00k/3.00kseq" in text or "/3.00k" in text  # run-sequences of the total
    assert "a note\n" in text and "control s0-1: 1 finished, 1 failed" in text
    assert "demo: 3/4 runs" in text


def test_log_gets_plain_lines_without_carriage_returns():
    out = io.StringIO()  # not a terminal (CI logs)
    _drive(out)
    text = out.getvalue()
    assert "\r" not in text and "\x1b" not in text
    lines = text.splitlines()
    assert "demo: 1/4 runs done | control s0-1 500/1,000 | 0m10s elapsed, 100 seq/s, ~0m20s left" in lines
    assert "a note" in lines and "control s0-1: 1 finished, 1 failed" in lines
    assert lines[-1].startswith("demo: 3/4 runs done | 0m10s elapsed")


def test_quiet_prints_nothing_even_on_a_terminal():
    out = Terminal()
    _drive(out, quiet=True)
    assert out.getvalue() == ""


def test_tqdm_is_imported_only_when_a_bar_is_drawn():
    sys.modules.pop("tqdm", None)
    _drive(io.StringIO())
    assert "tqdm" not in sys.modules
