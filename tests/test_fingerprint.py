"""A run is what its code computed: editing a study-file function's body makes its finished runs stale, editing a
comment, a docstring or unrelated code does not, a constant it reads counts, a worker that imports other code
refuses to train, and runs written before fingerprints existed are not reused silently."""

from __future__ import annotations

import json
import multiprocessing as mp
import textwrap
from pathlib import Path

import pytest

from clamp.execution.plan import plan
from clamp.execution.runner import run_study
from clamp.fingerprint import code_fingerprints, fingerprint, source_tokens
from clamp.importpath import import_study_module
from clamp.study.design import StudyError
from clamp.study.load import load_study
from clamp.study.overrides import select

STUDY = '''
"""A tiny study whose FunctionClamp function lives in this file."""
import torch
import clamp

SCALE = {scale}


def helper(p):
    return p * 0 + 1.0 / p.shape[-1]


def unrelated():
    return {unrelated}


def pattern(batch):
    """Every row attends uniformly (a doc that may change)."""
    R, B, T = batch.tokens.shape  # a comment that may change
    p = torch.tril(torch.ones(R, B, 1, T, T)) * SCALE
    return {body}


model = clamp.ModelConfig(n_layers=2, n_heads=2, d_model=8)
task = clamp.FewShotConfig(n_classes=10, d_in=8, n_heldout_classes=4, n_heldout_exemplars=2)
STUDY = clamp.Study(name="fp", seeds=[0], n_sequences=64, eval_every=32, eval_size=16, arms=[
    clamp.Arm(name="control", model=model, task=task, lr=1e-3, batch_size=16),
    clamp.Arm(name="clamped", model=model, task=task, lr=1e-3, batch_size=16,
              interventions=[clamp.FunctionClamp(site="blocks.1.attn.hook_pattern", heads=(0,), fn=pattern)]),
])
'''
BODY = "p / p.sum(-1, keepdim=True)"


def write(folder: Path, *, scale: str = "1.0", body: str = BODY, unrelated: str = "1") -> Path:
    path = folder / "fp_study.py"
    path.write_text(STUDY.format(scale=scale, body=body, unrelated=unrelated))
    return path


def run(path: Path, out: Path, **kw) -> int:
    return run_study(load_study(path), out=out, jobs=1, quiet=True, analyse=False, study_file=path, **kw)


def test_tokens_ignore_comments_docstrings_and_spacing_but_not_statements():
    a = 'def f(x):\n    """Doc."""\n    # note\n    return x + 1\n'
    assert source_tokens(a) == source_tokens("def f(x):\n\n    return x+1  # other note\n")
    assert source_tokens(a) != source_tokens("def f(x):\n    return x + 2\n")
    assert source_tokens("def f():\n    return f'{a!r:>3}'\n") == ['NAME:def', 'NAME:f', 'OP:(', 'OP:)', 'OP::', 'NEWLINE',
                                                                'INDENT', 'NAME:return', "STRING:f'{a!r:>3}'",
                                                                'NEWLINE', 'DEDENT']


def test_fingerprint_follows_the_function_what_it_calls_and_the_constants_it_reads(tmp_path):
    def fp(**kw) -> str:
        module = import_study_module(write(tmp_path, **kw))
        return fingerprint(module.pattern)

    base = fp()
    assert fp() == base
    assert fp(unrelated="2") == base  # other code in the file
    assert fp(body="helper(p)") != base  # the body, and a helper it calls now
    assert fp(scale="0.5") != base  # a module-level constant it reads
    path = write(tmp_path)
    path.write_text(path.read_text().replace("a doc that may change", "another doc")
                    .replace("a comment that may change", "another comment"))
    assert fingerprint(import_study_module(path).pattern) == base


@pytest.mark.slow
def test_an_edited_function_body_makes_its_finished_runs_stale(tmp_path):
    out = tmp_path / "results"
    path = write(tmp_path)
    assert run(path, out) == 0
    rec = json.loads((out / "fp/runs/clamped/seed0/run.json").read_text())
    assert list(rec["config"]["code"]) == [f"{load_study(path).arms[1].interventions[0].fn}"]
    assert rec["study_file"]["sha256"] and rec["study_file"]["path"] == str(path)
    before = (out / "fp/runs/clamped/seed0/metrics.csv").read_bytes()

    # a comment, a docstring, unrelated code: the same run, skipped, not a byte changed
    path.write_text(path.read_text().replace("a doc that may change", "edited doc").replace("return 1", "return 7"))
    study = load_study(path)
    assert len(plan(study, out / "fp", select(study, None, None)).skipped) == 2
    # the body: refused before training, naming what changed and the fix
    write(tmp_path, body="p * 0 + 0.5")
    with pytest.raises(StudyError, match=r"(?s)clamped/seed0 \(finished\): the code of .*:pattern changed.*--replace"):
        run(path, out)
    assert (out / "fp/runs/clamped/seed0/metrics.csv").read_bytes() == before
    assert run(path, out, replace=True) == 0  # the old run moved aside, the new code trained
    assert (out / "fp/runs/clamped/seed0/metrics.csv").read_bytes() != before
    # a constant the function reads
    write(tmp_path, body="p * 0 + 0.5", scale="0.5")
    with pytest.raises(StudyError, match="the code of .*:pattern changed"):
        run(path, out)


@pytest.mark.slow
def test_runs_without_fingerprints_are_refused_unless_accepted(tmp_path):
    out = tmp_path / "results"
    path = write(tmp_path)
    assert run(path, out) == 0
    # what a run written before fingerprints existed looks like: no code in its record, the old key
    rec_path = out / "fp/runs/clamped/seed0/run.json"
    rec = json.loads(rec_path.read_text())
    del rec["config"]["code"]
    rec["hash"] = "0" * 16
    rec_path.write_text(json.dumps(rec))
    with pytest.raises(StudyError, match="code unknown: written before clamp recorded the code of"):
        run(path, out)
    assert run(path, out, accept_unknown_code=True) == 0
    accepted = json.loads(rec_path.read_text())["code_accepted"]
    assert accepted["by"] == "clamp run --accept-unknown-code" and list(accepted["code"]) == list(
        code_fingerprints([load_study(path).arms[1].interventions[0].fn]))
    assert run(path, out) == 0  # accepted once, recognised from then on
    from clamp.analysis.report import build_report  # the page and report.md say so

    build_report(out / "fp")
    said = "code unknown, accepted with --accept-unknown-code (written before clamp recorded user code): clamped/seed0"
    assert said in (out / "fp/report.md").read_text() and said in (out / "fp/index.html").read_text()
    assert "pattern (study file)" in (out / "fp/report.md").read_text()


def _execute(job):  # in a spawned worker: imports the study file from disk, as a pool worker would
    from clamp.execution.pack import execute_pack

    return execute_pack(job)


@pytest.mark.slow
def test_a_worker_that_imports_changed_code_refuses_to_train(tmp_path):
    path = write(tmp_path)
    study = load_study(path)
    p = plan(study, tmp_path / "results" / "fp", select(study, ["clamped"], None))
    (job,) = p.jobs
    Path(job.runs[0].folder).mkdir(parents=True)
    write(tmp_path, body="p * 0 + 0.5")  # the file changes between planning and the worker's import
    with mp.get_context("spawn").Pool(1) as pool:
        (outcome,) = pool.apply(_execute, (job,))
    assert outcome["status"] == "failed"
    assert "changed since these runs were planned" in outcome["error"] and "nothing was trained" in outcome["error"]
    assert not (Path(job.runs[0].folder) / "checkpoints").exists()


def test_a_metric_that_raises_is_refused_before_training_naming_it(tmp_path):
    path = tmp_path / "raising.py"
    path.write_text(textwrap.dedent('''
        import clamp

        def bad_metric(view):
            return {"x": view.logits[:, 99, 0, 0]}  # no sequence 99: raises

        model = clamp.ModelConfig(n_layers=1, n_heads=2, d_model=8)
        task = clamp.FewShotConfig(n_classes=10, d_in=8)
        STUDY = clamp.Study(name="r", seeds=[0], n_sequences=64, eval_every=32, metrics=[bad_metric],
                            arms=[clamp.Arm(name="control", model=model, task=task)])
    '''))
    from clamp.cli import main

    code = main(["run", str(path), "--dry-run", "--out", str(tmp_path / "out")])
    assert code == 2
    with pytest.raises(StudyError, match=rf"metric function 'bad_metric' \({path}:4\) raised IndexError"):
        load_study(path, probe=True)


def test_an_nnsight_intervention_with_a_triggered_window_is_refused_at_load(tmp_path):
    path = tmp_path / "nn_when.py"
    path.write_text(textwrap.dedent('''
        import clamp

        def halve(model, ctx):
            model.blocks[0].attn.hook_z.output = model.blocks[0].attn.hook_z.output * 0.5

        model = clamp.ModelConfig(n_layers=1, n_heads=2, d_model=8)
        task = clamp.FewShotConfig(n_classes=10, d_in=8)
        iv = clamp.NnsightIntervention(site="blocks.0.attn.hook_z", fn=halve,
                                       windows=[clamp.Window(start=clamp.When("train/loss", "<", 1.0))])
        STUDY = clamp.Study(name="n", seeds=[0], n_sequences=64, eval_every=32,
                            arms=[clamp.Arm(name="control", model=model, task=task, interventions=[iv])])
    '''))
    with pytest.raises(StudyError, match="NnsightIntervention cannot have a triggered window"):
        load_study(path)  # the static checks: what `clamp list` and `--dry-run` run first
