"""Start-up: loading a study, `clamp list` and a rejected study file answer without torch; the probe still runs.

The static checks (at load) must agree with the model and tasks they stand in for (hook names, task sizes),
and the probe checks must still reject a no-op before anything is written or trained.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import ROOT


HEAVY = ("torch", "nnsight", "pandas", "scipy", "matplotlib")

HEADER = """\
import clamp
model = clamp.ModelConfig(n_layers=2, n_heads=4, d_model=32)
task = clamp.FewShotConfig(n_classes=50, d_in=64)
"""


def run_cli(argv: list[str]) -> tuple[int, str, set[str]]:
    """Run ``clamp.cli.main(argv)`` in a fresh interpreter: exit code, stderr, heavy modules imported."""
    code = (f"import sys, clamp.cli\ncode = clamp.cli.main({argv!r})\n"
            f"print('HEAVY:' + ','.join(m for m in {HEAVY!r} if m in sys.modules))\nsys.exit(code)")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600)
    line = [x for x in r.stdout.splitlines() if x.startswith("HEAVY:")]
    assert line, r.stdout + r.stderr
    return r.returncode, r.stdout + r.stderr, set(filter(None, line[-1][len("HEAVY:"):].split(",")))


def study_file(tmp_path: Path, interventions: str, name: str = "s.py") -> Path:
    p = tmp_path / name
    p.write_text(HEADER + textwrap.dedent(f"""
        STUDY = clamp.Study(name="s", seeds=[0], n_sequences=64, eval_every=32, arms=[
            clamp.Arm(name="a", model=model, task=task, interventions=[{interventions}])])
    """))
    return p


def test_unknown_hook_name_exits_2_without_torch(tmp_path):
    p = study_file(tmp_path, 'clamp.Knockout(site="blocks.1.attn.hook_vv", heads=(0,))')
    out = tmp_path / "out"
    code, text, heavy = run_cli(["run", str(p), "--out", str(out)])
    assert code == 2, text
    assert "unknown hook name 'blocks.1.attn.hook_vv'" in text and "did you mean" in text and "Traceback" not in text
    assert heavy == set(), heavy
    assert not out.exists()


def test_head_out_of_range_exits_2_without_torch(tmp_path):
    p = study_file(tmp_path, "clamp.match_clamp(layer=1, head=7)")
    code, text, heavy = run_cli(["run", str(p), "--dry-run", "--out", str(tmp_path / "out")])
    assert code == 2 and "out of range: the model has 4 heads per layer (0..3)" in text, text
    assert heavy == set(), heavy


def test_syntax_error_exits_2_without_torch(tmp_path):
    p = tmp_path / "broken.py"
    p.write_text(HEADER + "STUDY = clamp.Study(name='x', arms=[\n")
    code, text, heavy = run_cli(["run", str(p)])
    assert code == 2 and "syntax error" in text, text
    assert heavy == set(), heavy


def test_list_is_static_and_imports_nothing_heavy(tmp_path):
    study_file(tmp_path, "clamp.match_clamp(layer=1, head=0)")
    code, text, heavy = run_cli(["list", "--dir", str(tmp_path)])
    assert code == 0 and "static checks only" in text and "s: arms [a]" in text, text
    assert heavy == set(), heavy


def test_a_noop_is_still_refused_by_dry_run_before_anything_is_written(tmp_path):
    """The probe part (needs torch) runs in `clamp run --dry-run`: exit 2, one message, nothing written."""
    p = study_file(tmp_path, 'clamp.PatternClamp(layer=1, heads=(0,), pattern="induction", positions=(0, 1))')
    from clamp.study import load_study

    load_study(p)  # the static part alone accepts it: only the probe can tell it changes nothing
    out = tmp_path / "out"
    for extra in (["--dry-run"], []):
        code, text, heavy = run_cli(["run", str(p), "--out", str(out), *extra])
        assert code == 2, text
        assert "positions (0, 1) contain no query row of an induction pattern" in text and "Traceback" not in text
        assert text.count("clamp: error:") == 1
        assert "torch" in heavy
        assert not out.exists()


def test_dry_run_of_the_quickstart_does_not_import_nnsight(tmp_path):
    code, text, heavy = run_cli(["run", "studies/quickstart.py", "--dry-run", "--out", str(tmp_path)])
    assert code == 0, text
    assert "nnsight" not in heavy and "torch" in heavy  # the probe ran (torch), on the hooks backend


@pytest.mark.parametrize("kw", [{}, {"attn_only": False, "d_mlp": 16}, {"layernorm": False, "positions": "learned"},
                                {"n_layers": 3, "positions": "none", "smear_keys": True}])
def test_static_hook_names_are_the_models(kw):
    from clamp.model.config import ModelConfig, hook_names
    from clamp.model.transformer import Transformer

    cfg = ModelConfig(**{"n_layers": 2, "n_heads": 2, "d_model": 8, **kw}).resolve(
        {"d_in": 0, "d_vocab": 5, "d_out": 5, "n_ctx": 6})
    assert hook_names(cfg) == Transformer(cfg, [0]).hook_names()


@pytest.mark.parametrize("make", [
    lambda t: t.FewShotConfig(n_classes=10, d_in=8),
    lambda t: t.FewShotConfig(n_classes=10, d_in=8, n_pairs=3, n_labels=4),
    lambda t: t.RepeatConfig(vocab=16, half=4),
    lambda t: t.RepeatConfig(vocab=16, half=6, min_half=3, max_prefix=4),
    lambda t: t.MarkovConfig(n_states=3, n_ctx=32),
    lambda t: t.BurstyConfig(n_classes=64, d_in=16),
    lambda t: t.TextConfig(n_ctx=32, corpus_bytes=20_000),
])
def test_config_dims_are_the_built_tasks(make):
    import clamp.tasks as t

    cfg = make(t)
    assert cfg.dims() == cfg.build().dims()


def test_old_import_paths_still_work():
    from clamp.model import ModelConfig as A
    from clamp.model.config import ModelConfig
    from clamp.model.config import ModelConfig as B
    from clamp.tasks.fewshot_config import FewShotConfig as C
    from clamp.tasks import FewShotConfig
    from clamp.training.config import TrainConfig
    from clamp.training.config import TrainConfig as D

    assert A is B is ModelConfig and C is FewShotConfig and D is TrainConfig


def test_run_keys_unchanged_by_the_move():
    """Hashes at key version 3 (each run of a pack updated on its own), computed before the configs' next move:
    moving code must never invalidate a finished run. tests/test_keys_pinned.py pins every study's keys."""
    from clamp.study import load_study, study_record

    before = {
        "quickstart.py": {"control": {"0": "7657146918c35540", "1": "a250bf1d2af8c5d6", "2": "055574d9429c1e9c"},
                          "match_clamp": {"0": "81c747c8a1f995ac", "1": "5e3e1e53403644cd", "2": "c8f1ab7ded8c9986"}},
        "edelman2024_markov.py": {"control": {"0": "966b059557a417d4"}, "one_layer": {"0": "c8e1507ba5d1e65c"},
                                  "prev_clamp": {"0": "3342932b31ee67eb"}},
        "chan2022_bursty.py": {"bursty": {"0": "f3c6eb765dbb9581"}, "not_bursty": {"0": "08d4c6a3146627fc"}},
    }
    for name, arms in before.items():
        record = json.loads(json.dumps(study_record(load_study(ROOT / "studies" / name))))
        got = {a["name"]: a["run_hashes"] for a in record["arms"]}
        for arm, hashes in arms.items():
            for seed, h in hashes.items():
                assert got[arm][seed] == h, (name, arm, seed)


def test_unknown_field_exits_2_without_torch(tmp_path):
    p = tmp_path / "typo.py"
    p.write_text(HEADER + "STUDY = clamp.Study(name='x', seeds=[0], arms=[clamp.Arm(name='a', model=model, task=task, lrr=1e-3)])\n")
    code, text, heavy = run_cli(["run", str(p)])
    assert code == 2 and "'lrr'" in text and "Traceback" not in text, text
    assert heavy == set(), heavy
