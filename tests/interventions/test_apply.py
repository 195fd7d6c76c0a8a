"""Every intervention kind: positive, null and no-leak tests, gradients and schedules.

Positive: the clamped activation equals its target and the loss changes.
Null: an intervention whose window never opens trains bit-identically to none.
No-leak: after its window closes, the model computes exactly what an
unintervened model with the same weights computes, and no hook or nnsight
state remains on the model.
"""

from __future__ import annotations

import math

import pytest
import torch

from clamp.interventions import (
    Clamp, Knockout, PreservingAblation, Window, ideal_layer1,
    knockout_heads, make_intervener, match_clamp, perfect_copy, prev_token_pattern_clamp, replace_windows,
)
from clamp.interventions.effects import build_pattern
from clamp.tasks.measures import per_run_loss
from clamp.model.config import ModelConfig
from clamp.model.transformer import Transformer
from clamp.tasks import Batch, FewShotConfig
from clamp.training.config import TrainConfig
from clamp.training.trainer import Trainer
from helpers.user_code import kinds, shift_pattern

MODEL = ModelConfig(n_layers=2, n_heads=2, d_model=8)
TASK = FewShotConfig(n_classes=10, d_in=8, n_heldout_classes=4, n_heldout_exemplars=2)
TRAIN = TrainConfig(n_sequences=64, batch_size=16, lr=1e-3, eval_every=32, eval_size=16)
SEEDS = [0, 1]




@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    """A donor checkpoint: a differently seeded, briefly trained 2-run model."""
    t = Trainer(MODEL, TASK, TRAIN, seeds=[5, 6])
    t.run(32)
    path = tmp_path_factory.mktemp("ck") / "donor.pt"
    torch.save(t.state_dict(), path)
    return str(path)




KIND_NAMES = list(kinds("x").keys())


def trainer(ivs, seeds=SEEDS, train_cfg=TRAIN) -> Trainer:
    return Trainer(MODEL, TASK, train_cfg, seeds, intervener_factory=make_intervener(ivs, TASK.build()) if ivs is not None else None)


def donor(ckpt: str, runs: list[int]) -> Transformer:
    state = torch.load(ckpt, weights_only=True)["model"]
    m = Transformer(MODEL.resolve(TASK.build().dims()), [0] * len(runs))
    m.load_state_dict({k: v[runs] for k, v in state.items()})
    return m


def expected(key: str, iv, t: Trainer, batch: Batch, ckpt: str) -> tuple[str, torch.Tensor, torch.Tensor]:
    """(site, actual-slice selector, target) for the positive test, from an independent computation."""
    model = t.model
    names = model.hook_names()
    with torch.no_grad():
        _, clean = model.run_with_cache(batch, names)
    T = batch.tokens.shape[-1]
    if key == "clamp":
        return "blocks.0.attn.hook_z", (slice(None), slice(None), slice(None), 1), torch.full_like(clean["blocks.0.attn.hook_z"][:, :, :, 1], 0.5)
    if key in ("prev_token", "uniform"):
        head = iv.heads[0]
        p, _ = build_pattern(iv.pattern, batch, T, 1.0)
        return iv.site, (slice(None), slice(None), head), p
    if key == "match":
        sel = (slice(None), slice(None), 0, T - 1)
        target = torch.zeros(2, batch.size, T)
        for r in range(2):
            for b in range(batch.size):
                for pos in batch.meta["label_pos"][r, b].tolist():
                    target[r, b, pos] = 0.9 if pos == batch.meta["correct_pos"][r, b] else 0.1
        return iv.site, sel, target
    if key == "function":
        return iv.site, (slice(None), slice(None), 1), shift_pattern(batch)[:, :, 0]
    if key == "ideal_layer1":
        return "blocks.1.hook_resid_pre", (Ellipsis,), model.embed(batch).detach()
    if key == "perfect_copy":
        # hand-computed: with layer-1 untouched, scores come from the clean pass
        scores = clean["blocks.1.attn.hook_attn_scores"][:, :, 1, T - 1]  # [R, B, Tk]
        target = torch.full((2, batch.size, 5), -math.inf)
        for r in range(2):
            for b in range(batch.size):
                for pos, lab in zip(batch.meta["label_pos"][r, b].tolist(), batch.meta["context_labels"][r, b].tolist()):
                    target[r, b, lab] = scores[r, b, pos]
        return "hook_logits", (slice(None), slice(None), T - 1), target
    if key == "knockout_zero":
        return iv.site, (slice(None), slice(None), slice(None), 1), torch.zeros_like(clean[iv.site][:, :, :, 1])
    if key == "knockout_mean":
        z = clean[iv.site][:, :, :, 0]
        return iv.site, (slice(None), slice(None), slice(None), 0), z.mean(1, keepdim=True).expand_as(z)
    if key == "knockout_resample":
        p = clean[iv.site][:, :, 1]
        return iv.site, (slice(None), slice(None), 1), p.roll(1, dims=1)
    if key == "knockout_ref":
        ref = TASK.build().sample(8, torch.Generator().manual_seed(0))
        with torch.no_grad():
            _, c = model.run_with_cache(Batch.stack([ref, ref]), [iv.site])
        m = c[iv.site].mean(1, keepdim=True)
        return iv.site, (Ellipsis,), m.expand_as(clean[iv.site])
    if key == "knockout_ref_ckpt":
        ref = TASK.build().sample(8, torch.Generator().manual_seed(0))
        with torch.no_grad():
            _, c = donor(ckpt, [1, 1]).run_with_cache(Batch.stack([ref, ref]), [iv.site])
        return iv.site, (Ellipsis,), c[iv.site].mean(1, keepdim=True).expand_as(clean[iv.site])
    if key in ("keep_patterns", "keep_values"):
        site = "blocks.1.attn.hook_pattern" if key == "keep_patterns" else "blocks.1.attn.hook_v"
        return site, (Ellipsis,), clean[site]
    if key == "graft_output":
        with torch.no_grad():
            _, c = donor(ckpt, [0, 1]).run_with_cache(batch, [iv.site])
        return iv.site, (Ellipsis,), c[iv.site]
    if key == "graft_params":
        return "blocks.1.hook_resid_post", (Ellipsis,), None  # set in the test: needs this pass's input to the block
    raise KeyError(key)


@pytest.mark.parametrize("key", KIND_NAMES)
def test_positive(key, checkpoint):
    iv = kinds(checkpoint)[key]
    t = trainer([iv])
    batch = t.next_batch()
    site, sel, target = expected(key, iv, t, batch, checkpoint)
    names = [site, "blocks.1.hook_resid_pre"]
    logits, cache = t.intervener.forward(batch, 0, names, True)
    plain = t.model(batch)
    assert logits.shape == plain.shape
    if key == "graft_params":
        blk = donor(checkpoint, [0, 0]).blocks[1]
        target = blk(cache["blocks.1.hook_resid_pre"])
    torch.testing.assert_close(cache[site][sel], target.to(cache[site].dtype), rtol=1e-5, atol=1e-6)
    loss, plain_loss = per_run_loss(logits, batch), per_run_loss(plain, batch)
    assert torch.isfinite(loss).all()
    assert (loss - plain_loss).abs().min() > 1e-7, f"{key} did not change the loss"
    # the loss backpropagates without error and gives finite gradients
    torch.autograd.backward(loss.sum())
    assert all(torch.isfinite(p.grad).all() for p in t.model.parameters() if p.grad is not None)
    assert t.intervener.firing_metrics()[f"fired/{iv.name}"].tolist() == [1.0, 1.0]


def _history(t: Trainer) -> tuple[dict, dict]:
    rows = {}
    t.run(on_eval=lambda seen, m: rows.__setitem__(seen, {k: v for k, v in m.items() if not k.startswith(("fired/", "interventions/"))}))
    return rows, {k: v.clone() for k, v in t.model.state_dict().items()}


@pytest.mark.parametrize("key", KIND_NAMES)
def test_null_window_never_opens(key, checkpoint):
    iv = replace_windows(kinds(checkpoint)[key], [Window(start=10**9)])
    base_rows, base_state = _history(trainer(None))
    t = trainer([iv])
    rows, state = _history(t)
    assert rows.keys() == base_rows.keys()
    for seen in rows:
        for k, v in base_rows[seen].items():
            assert torch.equal(rows[seen][k], v), f"{k}@{seen}"
    for k, v in base_state.items():
        assert torch.equal(state[k], v), k
    assert t.intervener.firing_metrics()[f"fired/{iv.name}"].tolist() == [0.0, 0.0]


def _no_instrumentation(model: torch.nn.Module) -> None:
    for name, m in model.named_modules():
        assert not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks, name
        assert "forward" not in m.__dict__ and "__nnsight__" not in m.__dict__, name


@pytest.mark.parametrize("key", KIND_NAMES)
def test_no_leak_after_window(key, checkpoint):
    iv = replace_windows(kinds(checkpoint)[key], [Window(start=0, stop=32)])
    t = trainer([iv])
    fired = []
    t.run(on_eval=lambda seen, m: fired.append((seen, m[f"fired/{iv.name}"][0].item())))
    assert fired == [(0, 1.0), (32, 2.0), (64, 0.0)]  # 2 steps in the window, eval at 0 inside it
    _no_instrumentation(t.model)
    fresh = Transformer(t.model.cfg, t.model.seeds)
    fresh.load_state_dict(t.model.state_dict())
    batch = t.next_batch()
    logits, cache = t.intervener.forward(batch, t.seen, ["blocks.1.attn.hook_pattern"], True)
    ref_logits, ref_cache = fresh.run_with_cache(batch, ["blocks.1.attn.hook_pattern"])
    assert torch.equal(logits, ref_logits) and torch.equal(cache["blocks.1.attn.hook_pattern"], ref_cache["blocks.1.attn.hook_pattern"])
    assert torch.equal(t.model(batch), fresh(batch))
    t.model.zero_grad(set_to_none=True)
    torch.autograd.backward(per_run_loss(logits, batch).sum())
    torch.autograd.backward(per_run_loss(ref_logits, batch).sum())
    for (n, p), q in zip(t.model.named_parameters(), fresh.parameters()):
        assert torch.equal(p.grad, q.grad), n


def _head_cols(weight: torch.Tensor, h: int, dh: int) -> torch.Tensor:  # weight [R, D, H*dh]
    return weight[:, :, h * dh:(h + 1) * dh]


def test_constant_pattern_clamp_blocks_qk_gradient_only():
    t = trainer([prev_token_pattern_clamp(layer=0, head=0)])
    batch = t.next_batch()
    logits, _ = t.intervener.forward(batch, 0, (), True)
    torch.autograd.backward(per_run_loss(logits, batch).sum())
    attn, dh = t.model.blocks[0].attn, MODEL.d_head_resolved
    for W in (attn.W_Q, attn.W_K):
        assert torch.count_nonzero(_head_cols(W.weight.grad, 0, dh)) == 0
        assert torch.count_nonzero(_head_cols(W.weight.grad, 1, dh)) > 0
    assert torch.count_nonzero(_head_cols(attn.W_V.weight.grad, 0, dh)) > 0  # its values still learn
    others = [n for n, p in t.model.named_parameters() if p.grad is None or torch.count_nonzero(p.grad) == 0]
    assert others == [], others
    before = {n: p.detach().clone() for n, p in t.model.named_parameters()}
    t.run(64)
    changed = [n for n, p in t.model.named_parameters() if not torch.equal(before[n], p)]
    assert "blocks.0.attn.W_V.weight" in changed and "unembed.weight" in changed


def test_computed_clamps_pass_gradient():
    dh = MODEL.d_head_resolved
    # ideal layer 1: gradient reaches the embeddings and layer 2's queries/keys; layer 1 gets none
    t = trainer([ideal_layer1()])
    batch = t.next_batch()
    logits, _ = t.intervener.forward(batch, 0, (), True)
    torch.autograd.backward(per_run_loss(logits, batch).sum())
    m = t.model
    for p in (m.item_embed.weight, m.token_embed, m.blocks[1].attn.W_Q.weight, m.blocks[1].attn.W_K.weight):
        assert torch.count_nonzero(p.grad) > 0
    for n, p in m.blocks[0].named_parameters():
        assert p.grad is None or torch.count_nonzero(p.grad) == 0, n
    # perfect copy: gradient reaches the head's queries and keys, not its values or the unembedding
    t = trainer([perfect_copy(layer=1, head=1)])
    batch = t.next_batch()
    logits, _ = t.intervener.forward(batch, 0, (), True)
    torch.autograd.backward(per_run_loss(logits, batch).sum())
    attn = t.model.blocks[1].attn
    assert torch.count_nonzero(_head_cols(attn.W_Q.weight.grad, 1, dh)) > 0
    assert torch.count_nonzero(_head_cols(attn.W_K.weight.grad, 1, dh)) > 0
    assert torch.count_nonzero(_head_cols(attn.W_Q.weight.grad, 0, dh)) == 0
    assert attn.W_V.weight.grad is None or torch.count_nonzero(attn.W_V.weight.grad) == 0
    assert t.model.unembed.weight.grad is None or torch.count_nonzero(t.model.unembed.weight.grad) == 0
    assert torch.count_nonzero(t.model.blocks[0].attn.W_V.weight.grad) > 0  # through K-composition


def test_window_opens_mid_training_and_closes():
    iv = replace_windows(prev_token_pattern_clamp(layer=0, head=0), [Window(start=40, stop=90)])
    cfg = TrainConfig(n_sequences=160, batch_size=16, lr=1e-3, eval_every=32, eval_size=16)
    t = trainer([iv], train_cfg=cfg)
    steps, record = [], {}
    orig = t.intervener.forward

    def spy(batch, seen, names, train):
        if train:
            steps.append(seen)
        return orig(batch, seen, names, train)

    t.intervener.forward = spy
    t.run(on_eval=lambda seen, m: record.__setitem__(seen, (m[f"fired/{iv.name}"][0].item(), m["interventions/fired"][0].item())))
    # steps start at seen 0, 16, ...; the first at or after 40 is 48; the last before 90 is 80.
    # fired/<name> = steps since the last evaluation in which it fired (+1 if it fired at this one)
    assert steps == list(range(0, 160, 16))
    assert record == {0: (0, 0), 32: (0, 0), 64: (1 + 1, 1), 96: (2, 0), 128: (0, 0), 160: (0, 0)}
    assert t.intervener.active(39) == () and t.intervener.active(40) == (0,) and t.intervener.active(90) == ()


def test_several_windows_and_interventions_compose():
    a = replace_windows(knockout_heads(layer=1, keep=[0]), [(0, 16), (32, None)])
    b = match_clamp(layer=1, head=0)
    t = trainer([a, b])
    record = {}
    t.run(on_eval=lambda seen, m: record.__setitem__(seen, (m[f"fired/{a.name}"][0].item(), m[f"fired/{b.name}"][0].item(), m["interventions/fired"][0].item())))
    # a: steps at 0 (not 16), then eval at 32 -> 2; steps 32, 48 and eval 64 -> 3.  b: always.
    assert record == {0: (1, 1, 2), 32: (2, 3, 2), 64: (3, 3, 2)}
    batch = t.next_batch()
    _, cache = t.intervener.forward(batch, 64, ["blocks.1.attn.hook_v", "blocks.1.attn.hook_pattern"], False)
    assert torch.count_nonzero(cache["blocks.1.attn.hook_v"][:, :, :, 1]) == 0
    assert torch.equal(cache["blocks.1.attn.hook_pattern"][:, :, 0, -1].gather(-1, batch.meta["correct_pos"][..., None]),
                       torch.ones(2, batch.size, 1))


def test_applies_to_every_run_of_a_packed_model():
    t = trainer([Clamp(site="blocks.1.attn.hook_z", value=0.25)], seeds=[0, 1, 2])
    batch = t.next_batch()
    _, cache = t.intervener.forward(batch, 0, ["blocks.1.attn.hook_z"], False)
    assert torch.equal(cache["blocks.1.attn.hook_z"], torch.full_like(cache["blocks.1.attn.hook_z"], 0.25))


@pytest.mark.parametrize("n_layers, preserve, other, site", [
    # a layer-2 head's values zeroed: the layer-3 patterns (and layer-2 values) depend on it
    (3, "patterns", knockout_heads(layer=1, heads=[1]), "blocks.2.attn.hook_pattern"),
    (2, "values", knockout_heads(layer=1, heads=[1]), "blocks.1.attn.hook_v"),
    # a layer-1 head's values zeroed changes the layer-2 patterns
    (2, "patterns", Knockout(site="blocks.0.attn.hook_v", heads=(1,)), "blocks.1.attn.hook_pattern"),
    # a clamped layer-2 pattern stays clamped
    (2, "patterns", match_clamp(layer=1, head=0), "blocks.1.attn.hook_pattern"),
])
@pytest.mark.parametrize("ablation_first", [False, True])
def test_preserving_ablation_keeps_the_arms_other_interventions(n_layers, preserve, other, site, ablation_first):
    """The clean pass is the arm's model without the ablation, not the unintervened model."""
    ablate = PreservingAblation(layer=0, heads=(0,), preserve=preserve)
    task = TASK.build()
    t = Trainer(ModelConfig(n_layers=n_layers, n_heads=2, d_model=8), TASK, TRAIN, SEEDS,
                intervener_factory=make_intervener([ablate, other] if ablation_first else [other, ablate], task))
    batch = t.next_batch()
    _, cache = t.intervener.forward(batch, 0, [site], False)
    # "fired" means "changed the tensor": when the ablation's restore of the clean value runs first at the
    # site the other intervention edits, that value already carries the other's edit, so it changes nothing
    same_site = ablation_first and other.site == site
    fired = t.intervener.firing_metrics()
    assert fired["interventions/fired"].tolist() == ([1.0, 1.0] if same_site else [2.0, 2.0])
    assert fired[f"fired/{other.name}"].tolist() == ([0.0, 0.0] if same_site else [1.0, 1.0])
    t.intervener.unwrap()
    alone = make_intervener([other], task)(t.model)
    _, ref = alone.forward(batch, 0, [site], False)
    alone.unwrap()
    _, plain = t.model.run_with_cache(batch, [site])
    assert torch.equal(cache[site], ref[site])
    assert not torch.allclose(cache[site], plain[site])
    # in training the preserved activation keeps its graph and the loss backpropagates
    logits, _ = t.intervener.forward(batch, 0, (), True)
    torch.autograd.backward(per_run_loss(logits, batch).sum())
    assert all(torch.isfinite(p.grad).all() for p in t.model.parameters() if p.grad is not None)


# --------------------------------------------------------------------------- the hooks backend


@pytest.mark.parametrize("key", KIND_NAMES)
def test_hooks_backend_trains_like_nnsight(key, checkpoint):
    """The same compiled edits through forward hooks and through an nnsight trace: same weights and metrics."""
    iv = kinds(checkpoint)[key]
    outcomes = []
    for backend in ("nnsight", "hooks"):
        t = Trainer(MODEL, TASK, TRAIN, SEEDS, intervener_factory=make_intervener([iv], TASK.build(), backend=backend))
        metrics = []
        t.run(on_eval=lambda seen, m: metrics.append(m))
        outcomes.append((t.model.state_dict(), metrics))
        assert not any(m._forward_hooks for m in t.model.modules())  # the hooks went with their forward
    (wa, ma), (wb, mb) = outcomes
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert len(ma) == len(mb) and all(torch.equal(x[k], y[k]) for x, y in zip(ma, mb) for k in x)


def test_unknown_backend_is_refused():
    t = Trainer(MODEL, TASK, TRAIN, SEEDS)
    from clamp.interventions.apply import Applier

    with pytest.raises(ValueError, match="backend"):
        Applier(t.model, [knockout_heads(layer=1, keep=[0])], TASK.build(), backend="jax")
