"""Every intervention kind on foreign models: a tiny HF GPT-2, a tiny HF Llama and a user module defined here.

Positive: the edited activation equals its target (where it has a closed form) and
the loss changes.  Null: an intervention whose window never opens trains
bit-identically to none.  No-leak: after its window closes, the model computes
exactly what a fresh model with the same weights computes (logits and gradients,
bit for bit) and no nnsight state or clamp hook remains on it.
"""

from __future__ import annotations

import pytest
import torch

import clamp
from clamp.errors import ConfigError
from clamp.interventions import (
    Clamp, FunctionClamp, Knockout, NnsightIntervention, PreservingAblation, Window, GraftOutput, GraftParams, ideal_layer1,
    knockout_heads, make_intervener, match_clamp, perfect_copy, prev_token_pattern_clamp, replace_windows,
    uniform_pattern_clamp, validate_interventions,
)
from clamp.interventions.effects import build_pattern
from clamp.interventions.kinds.module_edit import ModuleEdit, parse_index
from clamp.model.foreign import ForeignModel, ModelSpec
from clamp.tasks import FewShotConfig
from clamp.tasks.measures import per_run_loss
from clamp.training.config import TrainConfig
from clamp.training.trainer import Trainer
from helpers.tiny_model import build_tiny

TASK = FewShotConfig(n_classes=10, d_in=8, n_heldout_classes=4, n_heldout_exemplars=2)
TRAIN = TrainConfig(n_sequences=64, batch_size=16, lr=1e-3, eval_every=32, eval_size=16)


# --------------------------------------------------------------------------- a user's own module




MODELS = {
    "gpt2": clamp.hf_gpt2(n_layer=2, n_head=2, n_embd=16),
    "llama": clamp.hf_llama(num_hidden_layers=2, num_attention_heads=2, hidden_size=16, intermediate_size=32,
                            num_key_value_heads=1),
    "user": ModelSpec(factory=build_tiny, adapter="helpers.tiny_model:TinyAdapter"),
}


def shift_pattern(batch) -> torch.Tensor:
    """Every row attends to position 0: ``[R, B, 1, T, T]``."""
    R, B, T = batch.tokens.shape
    p = torch.zeros(R, B, 1, T, T)
    p[..., 0] = 1.0
    return p


def halve_z(model, ctx) -> None:
    """A user's nnsight intervention: halve head 1's output in layer 0."""
    z = model.blocks[0].attn.hook_z.output
    new = z.clone()
    new[:, :, :, 1] = z[:, :, :, 1] * 0.5
    model.blocks[0].attn.hook_z.output = new


KINDS = {
    "clamp": Clamp(site="blocks.0.attn.hook_z", heads=(1,), value=0.5),
    "prev_token": prev_token_pattern_clamp(layer=0, head=0),
    "uniform": uniform_pattern_clamp(layer=1, head=1),
    "match": match_clamp(layer=1, head=0, strength=0.9),
    "function": FunctionClamp(site="blocks.0.attn.hook_pattern", heads=(1,), fn="test_foreign_interventions:shift_pattern"),
    "perfect_copy": perfect_copy(layer=1, head=1),
    "knockout_zero": knockout_heads(layer=1, keep=[0]),
    "knockout_mean": Knockout(site="blocks.0.attn.hook_z", heads=(0,), method="mean"),
    "knockout_resample": Knockout(site="blocks.0.attn.hook_pattern", heads=(1,), method="resample"),
    "knockout_ref": Knockout(site="blocks.0.hook_attn_out", method="mean", mean_over="reference", reference_size=8),
    "keep_patterns": PreservingAblation(layer=0, heads=(0,), preserve="patterns"),
    "keep_values": PreservingAblation(layer=0, heads=(1,), preserve="values", method="mean"),
    "nnsight": NnsightIntervention(site="blocks.0.attn.hook_z", fn="test_foreign_interventions:halve_z"),
}
MODULE = {"gpt2": "transformer.h.0.mlp", "llama": "net.model.layers.0.mlp", "user": "blocks.1.ln"}  # any module, by path


def double(x, ctx, *, factor=2.0):
    """A user function for ModuleEdit(method='function')."""
    return x * factor


def module_kinds(model: str) -> dict:
    m = MODULE[model]
    return {
        "module_clamp": ModuleEdit(module=m, index="[:, -1, 0:4]", value=0.25),
        "module_zero": ModuleEdit(module=m, index="[:, -1]", method="zero"),
        "module_mean": ModuleEdit(module=m, io="input", index="[:, -1]", method="mean"),
        "module_resample": ModuleEdit(module=m, index="...", method="resample"),
        "module_function": ModuleEdit(module=m, method="function", fn="test_foreign_interventions:double", kwargs={"factor": 3.0}),
    }


KEYS = list(KINDS) + list(module_kinds("gpt2"))
CASES = [(m, k) for m in MODELS for k in KEYS]


def kind(model: str, key: str):
    return KINDS[key] if key in KINDS else module_kinds(model)[key]


def trainer(model: str, ivs) -> Trainer:
    factory = make_intervener(ivs, TASK.build()) if ivs is not None else None
    return Trainer(MODELS[model], TASK, TRAIN, seeds=[0], intervener_factory=factory)


def target(key: str, iv, t: Trainer, batch) -> tuple[str, tuple, torch.Tensor] | None:
    """(site, selector, expected values) for kinds whose effect has a closed form; None otherwise."""
    with torch.no_grad():
        _, clean = t.model.run_with_cache(batch, t.model.hook_names())
    T = batch.tokens.shape[-1]
    if key == "clamp":
        return iv.site, (slice(None), slice(None), slice(None), 1), torch.full_like(clean[iv.site][:, :, :, 1], 0.5)
    if key in ("prev_token", "uniform"):
        return iv.site, (slice(None), slice(None), iv.heads[0]), build_pattern(iv.pattern, batch, T, 1.0)[0]
    if key == "match":
        row = torch.full((1, batch.size, T), 0.0)
        row.scatter_(-1, batch.meta["label_pos"], 0.1)
        row.scatter_(-1, batch.meta["correct_pos"][..., None], 0.9)
        return iv.site, (slice(None), slice(None), 0, T - 1), row
    if key == "function":
        return iv.site, (slice(None), slice(None), 1), shift_pattern(batch)[:, :, 0]
    if key == "knockout_zero":
        return iv.site, (slice(None), slice(None), slice(None), 1), torch.zeros_like(clean[iv.site][:, :, :, 1])
    if key == "knockout_mean":
        z = clean[iv.site][:, :, :, 0]
        return iv.site, (slice(None), slice(None), slice(None), 0), z.mean(1, keepdim=True).expand_as(z)
    if key == "knockout_resample":
        return iv.site, (slice(None), slice(None), 1), clean[iv.site][:, :, 1].roll(1, dims=1)
    if key == "keep_patterns":
        return "blocks.1.attn.hook_pattern", (Ellipsis,), clean["blocks.1.attn.hook_pattern"]
    if key == "nnsight":
        return iv.site, (slice(None), slice(None), slice(None), 1), clean[iv.site][:, :, :, 1] * 0.5
    if key.startswith("module_"):
        site = t.model.add_site(iv.module, iv.io)
        with torch.no_grad():
            _, c = t.model.run_with_cache(batch, [site])
        x = c[site][0]  # [B, ...]
        sel = (0, *parse_index(iv.index))
        value = {"module_clamp": lambda: torch.full_like(x[:, -1, 0:4], 0.25),
                 "module_zero": lambda: torch.zeros_like(x[:, -1]),
                 "module_mean": lambda: x[:, -1].mean(0, keepdim=True).expand_as(x[:, -1]),
                 "module_resample": lambda: x.roll(1, dims=0),
                 "module_function": lambda: x * 3.0}[key]()
        return site, sel, value
    return None


@pytest.mark.parametrize("model,key", CASES)
def test_positive(model, key):
    iv = kind(model, key)
    t = trainer(model, [iv])
    batch = t.next_batch()
    expect = target(key, iv, t, batch)
    names = [expect[0]] if expect else []
    if expect and expect[0].startswith("sites."):
        names = [expect[0]]
    logits, cache = t.intervener.forward(batch, 0, names, True)
    plain = t.model(batch)
    if expect:
        site, sel, value = expect
        torch.testing.assert_close(cache[site][sel], value.to(cache[site].dtype), rtol=1e-5, atol=1e-6)
    loss, plain_loss = per_run_loss(logits, batch), per_run_loss(plain, batch)
    assert torch.isfinite(loss).all() and (loss - plain_loss).abs().min() > 1e-7, f"{key} did not change the loss"
    torch.autograd.backward(loss.sum())
    assert all(torch.isfinite(p.grad).all() for p in t.model.parameters() if p.grad is not None)
    assert t.intervener.firing_metrics()[f"fired/{iv.name}"].tolist() == [1.0]


def _history(t: Trainer) -> tuple[dict, dict]:
    rows: dict = {}
    t.run(on_eval=lambda seen, m: rows.__setitem__(seen, {k: v for k, v in m.items() if not k.startswith(("fired/", "interventions/"))}))
    return rows, {k: v.clone() for k, v in t.model.state_dict().items()}


@pytest.mark.parametrize("model,key", CASES)
def test_null_window_never_opens(model, key):
    iv = replace_windows(kind(model, key), [Window(start=10**9)])
    base_rows, base_state = _history(trainer(model, None))
    t = trainer(model, [iv])
    rows, state = _history(t)
    assert rows.keys() == base_rows.keys()
    for seen in rows:
        for k, v in base_rows[seen].items():
            assert torch.equal(rows[seen][k], v), f"{k}@{seen}"
    for k, v in base_state.items():
        assert torch.equal(state[k], v), k
    assert t.intervener.firing_metrics()[f"fired/{iv.name}"].tolist() == [0.0]


def _clean_of_instrumentation(model: ForeignModel) -> None:
    for name, m in model.named_modules():
        assert "forward" not in m.__dict__ and "__nnsight__" not in m.__dict__, name
    for name in model.hook_names() + [f"sites.{k}" for k in model.sites]:  # clamp's hook points: only the adapter's routing calls them, nothing hooks them
        hp = model.hook_point(name)
        assert not hp._forward_hooks and not hp._forward_pre_hooks, name


@pytest.mark.parametrize("model,key", CASES)
def test_no_leak_after_window(model, key):
    iv = replace_windows(kind(model, key), [Window(start=0, stop=32)])
    t = trainer(model, [iv])
    fired = []
    t.run(on_eval=lambda seen, m: fired.append((seen, m[f"fired/{iv.name}"][0].item())))
    assert fired == [(0, 1.0), (32, 2.0), (64, 0.0)]
    _clean_of_instrumentation(t.model)
    fresh = ForeignModel(t.model.cfg, t.model.seeds)
    fresh.load_state_dict(t.model.state_dict())
    batch = t.next_batch()
    names = ["blocks.1.attn.hook_pattern"]
    logits, cache = t.intervener.forward(batch, t.seen, names, True)
    ref_logits, ref_cache = fresh.run_with_cache(batch, names)
    assert torch.equal(logits, ref_logits) and torch.equal(cache[names[0]], ref_cache[names[0]])
    t.model.zero_grad(set_to_none=True)
    torch.autograd.backward(per_run_loss(logits, batch).sum())
    torch.autograd.backward(per_run_loss(ref_logits, batch).sum())
    for (n, p), q in zip(t.model.named_parameters(), fresh.parameters()):
        assert (p.grad is None) == (q.grad is None) and (p.grad is None or torch.equal(p.grad, q.grad)), n


@pytest.fixture(scope="module")
def foreign_checkpoint(tmp_path_factory) -> str:
    t = trainer("gpt2", None)
    t.run(16)
    path = tmp_path_factory.mktemp("ck") / "gpt2.pt"
    torch.save(t.state_dict(), path)
    return str(path)


@pytest.mark.parametrize("make", [lambda ck: ideal_layer1(),
                                  lambda ck: GraftOutput(site="blocks.0.hook_resid_post", checkpoint=ck),
                                  lambda ck: GraftParams(layer=1, checkpoint=ck),
                                  lambda ck: Knockout(site="blocks.0.hook_attn_out", method="mean", mean_over="reference",
                                                      checkpoint=ck)],
                         ids=["ideal_layer1", "graft_output", "graft_params", "knockout_ref_checkpoint"])
def test_kinds_needing_the_builtin_model_are_rejected_before_training(make, foreign_checkpoint):
    iv = make(foreign_checkpoint)
    task = TASK.build()
    with pytest.raises(ConfigError, match=f"(?s){iv.name}.*(built-in model|foreign model)"):
        validate_interventions([iv], MODELS["gpt2"].resolve(task.dims()), task, 64)
