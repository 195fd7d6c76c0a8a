"""Every shipped study file's run keys are pinned: a change that moves one is a change to what runs compute.

A pure refactor keeps each key; a change to what a run computes changes its key on purpose (and
updates ``tests/data/run_keys.json`` in the same commit, saying why).  The keys are computed
without training (and without torch for most files).
"""

from __future__ import annotations

import json

import pytest

from clamp.study.keys import legacy_key, run_key
import clamp
from helpers import ROOT

PINNED = json.loads((ROOT / "tests" / "data" / "run_keys.json").read_text())


@pytest.mark.parametrize("name", sorted(PINNED))
def test_study_file_run_keys_are_pinned(name):
    study = clamp.load_study(ROOT / "studies" / name)
    got = {f"{a.name}/{seed}": [run_key(study, a, seed), legacy_key(study, a, seed)]
           for a in study.arms for seed in study.seeds}
    assert got == PINNED[name]


def test_every_study_file_is_pinned():
    assert sorted(p.name for p in (ROOT / "studies").glob("*.py")) == sorted(PINNED)
