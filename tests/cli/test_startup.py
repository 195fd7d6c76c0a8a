"""Start-up: `clamp --help` and `clamp --version` answer without importing torch, nnsight, pandas or scipy."""

from __future__ import annotations

import subprocess
import sys

import pytest
from helpers import ROOT

HEAVY = ("torch", "nnsight", "pandas", "scipy", "matplotlib")


def imported_after(code: str) -> set[str]:
    probe = code + "\nimport sys\nprint('HEAVY:' + ','.join(m for m in %r if m in sys.modules))" % (HEAVY,)
    r = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    line = [x for x in r.stdout.splitlines() if x.startswith("HEAVY:")][-1]
    return set(filter(None, line[len("HEAVY:"):].split(",")))


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["train", "--help"]])
def test_help_and_version_import_nothing_heavy(argv):
    code = f"import contextlib, io, clamp.cli\nwith contextlib.redirect_stdout(io.StringIO()):\n" \
           f"    try:\n        clamp.cli.main({argv!r})\n    except SystemExit:\n        pass"
    assert imported_after(code) == set()


def test_help_lists_every_subcommand(capsys):
    from clamp.cli import main

    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for cmd in ("run", "list", "report", "stats", "analyse", "train", "bench"):
        assert cmd in out


def test_loading_a_study_does_not_import_torch():
    assert "torch" not in imported_after("import clamp.cli, clamp.study\nclamp.study.load_study('studies/quickstart.py')")
