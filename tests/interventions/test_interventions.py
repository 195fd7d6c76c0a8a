"""Interventions as data: JSON round trips, the registry, and validation before training."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from clamp.errors import ConfigError
from clamp.interventions import (
    KINDS, Clamp, FunctionClamp, GraftOutput, GraftParams, HeadScale, Knockout, NnsightIntervention, PatternClamp, PreservingAblation, Window,
    ideal_layer1, intervention_from_dict, knockout_heads, make_intervener, match_clamp, perfect_copy,
    prev_token_pattern_clamp, validate_interventions,
)
from clamp.interventions.kinds.module_edit import ModuleEdit  # foreign models (clamp.model.foreign)
from clamp.model.config import ModelConfig
from clamp.tasks import FewShotConfig, RepeatConfig
from clamp.training.config import TrainConfig
from clamp.training.trainer import Trainer

TASK_CFG = FewShotConfig(n_classes=10, d_in=8, n_heldout_classes=4, n_heldout_exemplars=2)

EXAMPLES = [
    Clamp(site="blocks.0.attn.hook_pattern", heads=[1], positions=[2, 3], value=[[0.5, 0.5, 0, 0, 0]] * 2,
          windows=[Window(start=10, stop=20), (40, None)]),
    Clamp(site="hook_embed", value=0.0, name="silence"),
    prev_token_pattern_clamp(layer=0, head=1, strength=0.8),
    PatternClamp(layer=1, heads=(0, 1), pattern="uniform", positions=(4,)),
    match_clamp(layer=1, head=0, strength=0.75),
    FunctionClamp(site="blocks.0.attn.hook_z", fn="pkg.mod:fn", heads=(0,), kwargs={"scale": 2.0, "rows": [1, 2]}),
    ideal_layer1(),
    perfect_copy(layer=1, head=1, windows=[(0, 1000)]),
    knockout_heads(layer=1, keep=[0]),
    Knockout(site="blocks.0.attn.hook_v", heads=(1,), method="mean", mean_over="reference", reference_size=64,
             reference_seed=3, checkpoint="ck.pt", checkpoint_run=2),
    Knockout(site="blocks.0.attn.hook_z", heads=(0,), method="resample", positions=(1, 3)),
    PreservingAblation(layer=0, heads=(0, 1), preserve="values", target="values", method="mean"),
    GraftOutput(site="blocks.0.hook_resid_post", checkpoint="a/b.pt", checkpoint_run=0, heads=None),
    GraftParams(layer=0, checkpoint="a/b.pt"),
    NnsightIntervention(site="blocks.1.attn.hook_pattern", fn="pkg.mod:sharpen", blocking=True, kwargs={"power": 2.0}),
    HeadScale(layer=1, heads=[0, 1], scale=0.5, noise=0.1, seed=2, windows=[(0, 500)]),
    ModuleEdit(module="transformer.h.0.mlp", io="input", index="[:, -1]", method="function", fn="pkg.mod:f", kwargs={"a": 1}),
]


@pytest.fixture
def resolved():
    task = TASK_CFG.build()
    return ModelConfig(n_layers=2, n_heads=2, d_model=8).resolve(task.dims()), task


def test_every_kind_has_an_example():
    assert {type(iv) for iv in EXAMPLES} == set(KINDS.values())


@pytest.mark.parametrize("iv", EXAMPLES, ids=lambda iv: iv.name)
def test_json_round_trip(iv):
    text = json.dumps(iv.to_dict())
    back = intervention_from_dict(json.loads(text))
    assert back == iv and type(back) is type(iv)
    assert back.to_dict() == iv.to_dict()
    assert json.loads(text)["kind"] == iv.kind


def test_lists_and_tuples_build_equal_specs():
    assert Knockout(site="s", heads=[1, 2]) == Knockout(site="s", heads=(1, 2))
    assert Clamp(site="s", value=[[1, 2]]).value == ((1, 2),)
    assert Clamp(site="s", value=torch.ones(2)).value == (1.0, 1.0)
    assert perfect_copy(windows=[{"start": 5, "stop": None}]).windows == (Window(start=5),)


def test_specs_are_frozen():
    with pytest.raises(Exception):
        perfect_copy().head = 3  # type: ignore[misc]


def test_rejects_unknown_kind_and_keys():
    with pytest.raises(ConfigError, match="unknown intervention kind 'nope'"):
        intervention_from_dict({"kind": "nope"})
    with pytest.raises(ConfigError, match=r"unknown keys \['hed'\]"):
        intervention_from_dict({"kind": "perfect_copy", "hed": 1})
    with pytest.raises(ConfigError, match="unknown keys"):
        intervention_from_dict({"kind": "clamp", "site": "hook_embed", "windows": [{"begin": 0}]})


def test_default_names_are_derived():
    assert [iv.name for iv in (knockout_heads(layer=1, keep=[0]), prev_token_pattern_clamp(layer=0, head=0),
                               match_clamp(), ideal_layer1(), perfect_copy())] == [
        "knockout_L1_v_keep0", "prev_token_L0H0", "induction_L1H0", "ideal_layer1", "perfect_copy_L1H0"]


def test_windows():
    iv = perfect_copy(windows=[(0, 10), (20, None)])
    assert [iv.active(s) for s in (0, 9, 10, 19, 20, 10**9)] == [True, True, False, False, True, True]


def test_importing_specs_does_not_import_nnsight():
    code = "import sys, clamp.interventions, clamp.interventions.spec; print('nnsight' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_valid_arm_passes(resolved):
    cfg, task = resolved
    validate_interventions([knockout_heads(layer=1, keep=[0]), ideal_layer1(), perfect_copy(layer=1, head=0),
                            prev_token_pattern_clamp(), match_clamp(layer=1, head=1)], cfg, task, 1000)


@pytest.mark.parametrize("iv, fragment", [
    (Clamp(site="blocks.0.attn.hook_patern", value=0.0), "did you mean 'blocks.0.attn.hook_pattern'"),
    (Clamp(site="blocks.2.attn.hook_z", value=0.0), "unknown hook name"),
    (knockout_heads(layer=1, heads=[2]), r"head index \[2\] out of range: the model has 2 heads"),
    (prev_token_pattern_clamp(layer=0, head=5), "out of range"),
    (perfect_copy(layer=1, head=9), "out of range"),
    (Clamp(site="hook_embed", heads=(0,), value=0.0), "has no head axis"),
    (perfect_copy(windows=[(2000, None)]), "at or after the run ends"),
    (perfect_copy(windows=[(50, 50)]), "start=50 >= stop=50"),
    (perfect_copy(windows=[(-1, 5)]), "non-negative"),
    (Clamp(site="blocks.0.attn.hook_pattern", heads=(0,), value=[1.0, 0.0]), r"shape \[2\] but the clamped slice has shape \[1, 5, 5\]"),
    (Clamp(site="blocks.0.attn.hook_z", positions=(7,), value=0.0), "positions"),
    (match_clamp(strength=1.5), "strength"),
    (Knockout(site="blocks.1.attn.hook_v", heads=(0,), keep=(1,)), "not both"),
    (Knockout(site="blocks.1.attn.hook_v", keep=(0, 1)), "spares every head"),
    (Knockout(site="blocks.1.attn.hook_v", method="mean", mean_over="reference", checkpoint="/no/such.pt"), "does not exist"),
    (PreservingAblation(layer=1, heads=(0,), preserve="patterns"), "needs a later layer"),
    (GraftParams(layer=0, checkpoint="/no/such.pt"), "does not exist"),
    (FunctionClamp(site="hook_embed", fn="no_such_module_xyz:f"), "cannot import"),
    (FunctionClamp(site="hook_embed", fn="torch:zeros"), "failed"),
])
def test_invalid_interventions_name_the_problem(resolved, iv, fragment):
    cfg, task = resolved
    with pytest.raises(ConfigError, match=fragment) as err:
        validate_interventions([iv], cfg, task, 1000)
    assert repr(iv.name) in str(err.value)


def test_composite_clamps_need_a_second_layer():
    task = TASK_CFG.build()
    cfg = ModelConfig(n_layers=1, n_heads=2, d_model=8).resolve(task.dims())
    with pytest.raises(ConfigError) as err:
        validate_interventions([perfect_copy(), ideal_layer1()], cfg, task, 1000)
    msg = str(err.value)
    assert "'perfect_copy_L1H0' (perfect_copy)" in msg and "'ideal_layer1' (ideal_layer1)" in msg
    assert "set n_layers >= 2" in msg


def test_task_specific_clamps_need_the_fewshot_task():
    task = RepeatConfig(vocab=8, half=4).build()
    cfg = ModelConfig(n_layers=2, n_heads=2, d_model=8).resolve(task.dims())
    with pytest.raises(ConfigError, match="few-shot task"):
        validate_interventions([match_clamp()], cfg, task, 1000)


def test_duplicate_names_rejected(resolved):
    cfg, task = resolved
    with pytest.raises(ConfigError, match="same name"):
        validate_interventions([perfect_copy(), perfect_copy(windows=[(0, 10)])], cfg, task, 1000)


def test_bad_arm_fails_before_training():
    with pytest.raises(ConfigError, match="did you mean"):
        Trainer(ModelConfig(n_layers=2, n_heads=2, d_model=8), TASK_CFG, TrainConfig(n_sequences=64, eval_every=32),
                seeds=[0], intervener_factory=make_intervener([Clamp(site="blocks.0.hook_atn_out")], TASK_CFG.build()))


def test_checkpoint_with_other_run_count_needs_checkpoint_run(tmp_path):
    t = Trainer(ModelConfig(n_layers=2, n_heads=2, d_model=8), TASK_CFG, TrainConfig(n_sequences=32, eval_every=32), seeds=[0, 1, 2])
    path = tmp_path / "ck.pt"
    torch.save(t.model.state_dict(), path)
    with pytest.raises(ConfigError, match="set checkpoint_run"):
        Trainer(ModelConfig(n_layers=2, n_heads=2, d_model=8), TASK_CFG, TrainConfig(n_sequences=32, eval_every=32),
                seeds=[0, 1], intervener_factory=make_intervener([GraftParams(layer=0, checkpoint=str(path))], TASK_CFG.build()))
    other = ModelConfig(n_layers=2, n_heads=2, d_model=12).resolve(TASK_CFG.build().dims())
    with pytest.raises(ConfigError, match="does not fit"):
        validate_interventions([GraftParams(layer=0, checkpoint=str(path))], other, TASK_CFG.build(), 100)
