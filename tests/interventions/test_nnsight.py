"""User interventions written with nnsight (NnsightIntervention): positive, null, no-leak, gradients, study files.

The functions below are what a researcher writes in a study file: they read a
hook point's output with nnsight's syntax, clone it, edit the clone and assign it.
"""

from __future__ import annotations

import json
import sys
import textwrap

import pytest
import torch

from clamp.errors import ConfigError
from clamp.interventions import (
    NnsightIntervention, Window, intervention_from_dict, make_intervener, validate_interventions,
)
from clamp.model.config import ModelConfig
from clamp.model.transformer import Transformer
from clamp.tasks import FewShotConfig
from clamp.tasks.measures import per_run_loss
from clamp.training.config import TrainConfig
from clamp.training.trainer import Trainer
from helpers.user_code import read_only, sharpen, sharpened

MODEL = ModelConfig(n_layers=2, n_heads=2, d_model=8)
TASK = FewShotConfig(n_classes=10, d_in=8)
TRAIN = TrainConfig(n_sequences=64, batch_size=16, lr=1e-3, eval_every=32, eval_size=16)
SITE = "blocks.1.attn.hook_pattern"
SEEN: list[tuple[int, bool, tuple]] = []






def record(model, ctx) -> None:
    SEEN.append((ctx.seen, ctx.train, ctx.runs))
    sharpen(model, ctx)





def in_place(model, ctx) -> None:
    model.blocks[1].attn.hook_pattern.output[:, :, 0] = 0.5


def wrong_shape(model, ctx) -> None:
    model.blocks[1].attn.hook_pattern.output = model.blocks[1].attn.hook_pattern.output[:, :, :1].clone()


def iv(fn=sharpen, **kw) -> NnsightIntervention:
    return NnsightIntervention(site=SITE, fn=fn, **kw)


def trainer(ivs, seeds=(0, 1)) -> Trainer:
    factory = make_intervener(ivs, TASK.build()) if ivs is not None else None
    return Trainer(MODEL, TASK, TRAIN, list(seeds), intervener_factory=factory)


def resolved():
    task = TASK.build()
    return MODEL.resolve(task.dims()), task


def test_declared_with_a_callable_and_serialised_by_import_path():
    a = iv(kwargs={"power": 2.0}, blocking=True)
    assert a.fn == "helpers.user_code:sharpen" and a.name == "nnsight_sharpen_L1_pattern"
    d = json.loads(json.dumps(a.to_dict()))
    assert d["kind"] == "nnsight" and d["fn"] == a.fn
    assert intervention_from_dict(d) == a


def test_positive_edits_the_site_and_counts_changes():
    t = trainer([iv()])
    batch = t.next_batch()
    _, clean = t.model.run_with_cache(batch, [SITE])
    logits, cache = t.intervener.forward(batch, 0, [SITE], True)
    torch.testing.assert_close(cache[SITE], sharpened(clean[SITE], 0, 4.0))
    assert not torch.equal(logits, t.model(batch))
    torch.autograd.backward(per_run_loss(logits, batch).sum())  # backward through the user's edit works
    assert t.intervener.firing_metrics()[f"fired/{iv().name}"].tolist() == [1.0, 1.0]


def test_context_carries_seen_train_and_runs():
    SEEN.clear()
    t = trainer([iv(fn=record)], seeds=(3, 4))
    t.run(32, on_eval=lambda seen, m: None)
    assert SEEN[0] == (0, False, (3, 4))  # the evaluation at 0
    assert (0, True, (3, 4)) in SEEN and (16, True, (3, 4)) in SEEN


def test_null_window_never_opens_is_bit_identical():
    def history(t):
        rows = {}
        t.run(on_eval=lambda seen, m: rows.__setitem__(seen, {k: v for k, v in m.items() if not k.startswith(("fired/", "interventions/"))}))
        return rows, t.model.state_dict()
    base_rows, base_state = history(trainer(None))
    t = trainer([iv(windows=[Window(start=10**9)])])
    rows, state = history(t)
    assert rows.keys() == base_rows.keys()
    assert all(torch.equal(rows[s][k], v) for s in rows for k, v in base_rows[s].items())
    assert all(torch.equal(state[k], v) for k, v in base_state.items())


def test_no_leak_after_window():
    a = iv(windows=[Window(start=0, stop=32)])
    t = trainer([a])
    fired = []
    t.run(on_eval=lambda seen, m: fired.append((seen, m[f"fired/{a.name}"][0].item())))
    assert fired == [(0, 1.0), (32, 2.0), (64, 0.0)]
    for name, m in t.model.named_modules():
        assert "forward" not in m.__dict__ and not m._forward_hooks, name
    fresh = Transformer(t.model.cfg, t.model.seeds)
    fresh.load_state_dict(t.model.state_dict())
    batch = t.next_batch()
    logits, _ = t.intervener.forward(batch, t.seen, [], True)
    assert torch.equal(logits, fresh(batch))


def _layer1_qk_grad(blocking: bool) -> torch.Tensor:
    t = trainer([iv(blocking=blocking)])
    batch = t.next_batch()
    logits, _ = t.intervener.forward(batch, 0, (), True)
    torch.autograd.backward(per_run_loss(logits, batch).sum())
    attn = t.model.blocks[1].attn
    dh = MODEL.d_model // MODEL.n_heads
    return torch.cat([attn.W_Q.weight.grad[:, :, :dh], attn.W_K.weight.grad[:, :, :dh]])  # head 0's columns


def test_gradient_flows_through_the_edit_unless_blocking():
    assert _layer1_qk_grad(blocking=False).abs().max() > 0
    assert torch.equal(_layer1_qk_grad(blocking=True), torch.zeros_like(_layer1_qk_grad(blocking=True)))


@pytest.mark.parametrize("fn, fragment", [
    (read_only, "leaves blocks.1.attn.hook_pattern unchanged: helpers.user_code:read_only assigned no new value"),
    (in_place, "in place; clone it"),
    (wrong_shape, r"keep the shape and dtype"),
])
def test_validation_on_a_probe_batch(fn, fragment):
    cfg, task = resolved()
    with pytest.raises(ConfigError, match=fragment) as err:
        validate_interventions([iv(fn=fn)], cfg, task, 64)
    assert repr(iv(fn=fn).name) in str(err.value)


def test_hooks_backend_is_refused():
    cfg, task = resolved()
    from clamp.interventions.apply import Applier

    with pytest.raises(ConfigError, match="backend='nnsight'"):
        Applier(Transformer(cfg, [0]), [iv()], task, backend="hooks")


def test_nnsight_debug_mode_is_set_off_where_the_trace_is_built():
    from nnsight import CONFIG

    CONFIG.APP.DEBUG = True  # what `pytest -v` does
    t = trainer([iv()])
    t.intervener.forward(t.next_batch(), 0, (), True)
    assert CONFIG.APP.DEBUG is False


STUDY_FILE = '''
import torch
import clamp

def sharpen(model, ctx, power=4.0):
    pattern = model.blocks[1].attn.hook_pattern.output
    new = pattern.clone()
    p = pattern[:, :, 0] ** power
    new[:, :, 0] = p / p.sum(-1, keepdim=True)
    model.blocks[1].attn.hook_pattern.output = new

def first_token(batch):
    R, B, T = batch.tokens.shape
    p = torch.zeros(R, B, 1, T, T)
    p[..., 0] = 1.0
    return p

model = clamp.ModelConfig(n_layers=2, n_heads=2, d_model=8)
task = clamp.FewShotConfig(n_classes=10, d_in=8)
STUDY = clamp.Study(name="nn", seeds=[0], n_sequences=64, eval_every=32, eval_size=16, arms=[
    clamp.Arm(name="sharp", model=model, task=task, lr=1e-3, batch_size=16, interventions=[
        clamp.NnsightIntervention(fn=sharpen, site="blocks.1.attn.hook_pattern", windows=[(0, 32)]),
        clamp.FunctionClamp(site="blocks.0.attn.hook_pattern", heads=(1,), fn=first_token),
    ]),
])
'''


def test_study_file_functions_resolve_by_a_stable_module_name(tmp_path):
    from clamp.study import load_study
    from clamp.importpath import study_module_name

    path = tmp_path / "my-study.py"
    path.write_text(textwrap.dedent(STUDY_FILE))
    study = load_study(path)
    name = study_module_name(path)
    nn, fc = study.arms[0].interventions
    assert nn.fn == f"{name}:sharpen" and fc.fn == f"{name}:first_token"
    assert name in sys.modules  # kept, so the import paths resolve
    assert study_module_name(path) == name  # stable
    assert intervention_from_dict(nn.to_dict()) == nn
    del sys.modules[name]  # as in a fresh worker process: imported again by path from the registry
    from clamp.importpath import resolve_function as load_function

    assert load_function(nn.fn).__name__ == "sharpen" and name in sys.modules


def test_study_module_name_is_the_same_in_every_clone(tmp_path):
    """Run keys of arms with study-file functions hold the module name: cloning or moving the project keeps it."""
    from clamp.importpath import study_module_name

    names = []
    for clone in ("a", "b"):
        (tmp_path / clone / ".git").mkdir(parents=True)
        (tmp_path / clone / "studies").mkdir()
        names.append(study_module_name(tmp_path / clone / "studies" / "s.py"))
    assert names[0] == names[1]
    assert study_module_name(tmp_path / "a" / "other" / "s.py") != names[0]  # same stem elsewhere: no collision
    assert study_module_name(tmp_path / "x.py") != study_module_name(tmp_path / "y" / "x.py")  # outside a checkout
