"""Full-model analyses on tiny hand-set models with known answers (clamp.analysis.posthoc)."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from clamp.analysis.posthoc import (
    ablations, additivity, classify, classify_heads, composition, evaluate, head_scores, knock_out, knocked_out,
    progress_clamps, progress_measures, redundancy, redundancy_summary, spearman, strongest_first,
)
from clamp.interventions import knockout_heads, match_clamp, prev_token_pattern_clamp
from clamp.model.config import ModelConfig
from clamp.model.transformer import Transformer
from clamp.tasks import FewShotConfig

TASK_CFG = FewShotConfig(n_classes=10, d_in=8, n_heldout_classes=0, n_heldout_exemplars=0)


@pytest.fixture(scope="module")
def task():
    return TASK_CFG.build()


@pytest.fixture(scope="module")
def batch(task):
    return task.sample(64, torch.Generator().manual_seed(1))


def tiny(task, seed: int = 0, **kw) -> Transformer:
    cfg = ModelConfig(n_layers=2, n_heads=2, d_model=8, **kw).resolve(task.dims())
    return Transformer(cfg, [seed])


def silence_head(model: Transformer, layer: int, head: int) -> None:
    """Zero the output projection of one head: it then contributes nothing to the residual."""
    dh = model.cfg.d_head_resolved
    with torch.no_grad():
        model.blocks[layer].attn.W_O.weight[:, head * dh:(head + 1) * dh, :] = 0.0


def state(model: Transformer) -> dict:
    return {k: v.clone() for k, v in model.state_dict().items()}


# --------------------------------------------------------------------------- evaluate


def test_evaluate_plain_and_knockout(task, batch):
    model = tiny(task)
    before = state(model)
    plain = evaluate(model, batch, task)
    ko = evaluate(model, batch, task, [knockout_heads(layer=1, heads=[0])])
    assert plain.fired == 0 and ko.fired == 1
    assert not torch.allclose(plain.loss, ko.loss)  # positive: the knockout changes the loss
    again = evaluate(model, batch, task)
    assert torch.equal(plain.loss, again.loss)  # no leak: the model is left as it was
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert not any("forward" in m.__dict__ for m in model.modules())  # nnsight unwrapped


def test_head_scores_known_answers_under_pattern_clamps(task, batch):
    model = tiny(task)
    scores = head_scores(model, batch, task, [match_clamp(layer=1, head=0), prev_token_pattern_clamp(layer=0, head=1)])
    s = scores.set_index(["layer", "head", "metric"])["value"]
    assert s[(1, 0, "induction_strength")] == pytest.approx(1.0)
    assert s[(0, 1, "prev_token")] == pytest.approx(1.0)
    assert abs(s[(1, 1, "induction_strength")]) < 1.0
    assert set(scores["metric"]) == {"prev_token", "induction_strength"}
    assert (scores[scores["metric"] == "induction_strength"]["layer"] >= 1).all()


# --------------------------------------------------------------------------- redundancy


def test_knocking_out_a_silent_head_changes_nothing(task, batch):
    model = tiny(task)
    silence_head(model, 1, 1)
    t = redundancy(model, batch, task, layer=1)
    loss = {(c, h): v for c, h, v in zip(t["condition"], t["head"], t["loss"])}
    assert loss[("knock_out", 1)] == pytest.approx(loss[("full", -1)], abs=1e-6)  # null
    assert loss[("keep_alone", 0)] == pytest.approx(loss[("full", -1)], abs=1e-6)  # keeping the only live head = full
    assert loss[("knock_out", 0)] != pytest.approx(loss[("full", -1)], abs=1e-6)  # positive
    assert len(t) == 1 + 2 * 2


def test_keep_alone_of_every_head_is_the_full_model(task, batch):
    model = tiny(task)
    full = evaluate(model, batch, task).loss
    assert knock_out(1, []) == []
    t = redundancy(model, batch, task, layer=1, heads=[0])  # one head taking part: keeping it alone knocks out nothing
    assert t[t["condition"] == "keep_alone"]["loss"].iloc[0] == pytest.approx(float(full[0]), abs=1e-6)


def test_redundancy_summary_spearman_known_answers():
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1])[0] == pytest.approx(-1.0)
    assert math.isnan(spearman([1, 2], [1, 2])[0]) and math.isnan(spearman([1, 2, 3], [1, 1, 1])[0])
    t = pd.DataFrame({"seed": 3, "layer": 1, "head": [-1, 0, 1, 2, 3, 0, 1, 2, 3],
                      "condition": ["full"] + ["knock_out"] * 4 + ["keep_alone"] * 4,
                      "induction_strength": [math.nan, .2, .8, .5, .1, .2, .8, .5, .1],
                      "loss": [.05, .06, .07, .05, .05, .5, .1, .3, .6], "acc": [1, .99, .98, 1, 1, .7, .95, .8, .6]})
    s = redundancy_summary(t).set_index("metric")
    assert s.loc["acc", "spearman_rho"] == pytest.approx(1.0) and s.loc["loss", "spearman_rho"] == pytest.approx(-1.0)
    assert s.loc["acc", "knock_out_min"] == pytest.approx(0.98) and s.loc["acc", "full"] == 1
    assert s.loc["acc", "seed"] == 3 and s.loc["acc", "n_heads"] == 4


# --------------------------------------------------------------------------- additivity


def test_additivity_endpoints_and_order(task, batch):
    model = tiny(task)
    full = float(evaluate(model, batch, task).loss[0])
    none = float(evaluate(model, batch, task, [knockout_heads(layer=1, heads=[0, 1])]).loss[0])
    scores = pd.DataFrame([(0, 1, 0, "induction_strength", 0.1), (0, 1, 1, "induction_strength", 0.9)],
                          columns=["run", "layer", "head", "metric", "value"])
    t = additivity(model, batch, task, layer=1, scores=scores).sort_values("n_heads")
    assert t["n_heads"].tolist() == [0, 1, 2]
    assert t["loss"].iloc[-1] == pytest.approx(full, abs=1e-6)  # everything back = the full model
    assert t["loss"].iloc[0] == pytest.approx(none, abs=1e-6)  # nothing back = all layer-2 heads knocked out
    assert t["added_head"].tolist() == [-1, 1, 0] and t["heads_kept"].tolist() == ["", "1", "1-0"]
    only1 = float(evaluate(model, batch, task, [knockout_heads(layer=1, heads=[0])]).loss[0])
    assert t["loss"].iloc[1] == pytest.approx(only1, abs=1e-6)


def test_strongest_first_breaks_ties_by_index():
    assert strongest_first({3: 0.5, 1: 0.5, 0: 0.9, 2: -1.0}) == [0, 1, 3, 2]


# --------------------------------------------------------------------------- composition


def kv_model(task) -> Transformer:
    """No LayerNorm; layer-1 head 0 writes dims 0-1, read only by layer-2 keys (K); head 1 writes dims 2-3,
    read only by layer-2 values (V).  Embeddings, layer-2 outputs and the unembedding use dims 4-7."""
    model = tiny(task, seed=3, layernorm=False)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        model.item_embed.weight[..., :4] = 0
        model.item_embed.bias[..., :4] = 0
        model.token_embed[..., :4] = 0
        a0, a1 = model.blocks[0].attn, model.blocks[1].attn
        a0.W_O.weight.zero_()
        a0.W_O.weight[0, 0:4, 0:2] = torch.randn(4, 2, generator=g) * 3  # head 0 -> dims 0-1
        a0.W_O.weight[0, 4:8, 2:4] = torch.randn(4, 2, generator=g) * 3  # head 1 -> dims 2-3
        a1.W_Q.weight[:, 0:4] = 0
        a1.W_K.weight[:, 2:4] = 0
        a1.W_K.weight[:, 0:2] *= 5
        a1.W_V.weight[:, 0:2] = 0
        a1.W_V.weight[:, 2:4] *= 5
        a1.W_O.weight[..., 0:4] = 0
        model.unembed.weight[:, 0:4] = 0
    return model


def test_composition_separates_k_and_v_heads(task, batch):
    model = kv_model(task)
    t = composition(model, batch, task, layer=0)
    d = {(h, a): v for h, a, v in zip(t["head"], t["ablation"], t["delta_loss"])}
    # Head 0 acts only through layer-2 keys: keeping the clean patterns leaves nothing for its ablation to do.
    assert d[(0, "pattern_preserving")] == pytest.approx(0.0, abs=1e-6)
    assert abs(d[(0, "value_preserving")]) > 1e-4
    assert d[(0, "full")] == pytest.approx(d[(0, "value_preserving")], abs=1e-6)
    # Head 1 acts only through layer-2 values: keeping the clean values leaves nothing.
    assert d[(1, "value_preserving")] == pytest.approx(0.0, abs=1e-6)
    assert abs(d[(1, "pattern_preserving")]) > 1e-4
    assert d[(1, "full")] == pytest.approx(d[(1, "pattern_preserving")], abs=1e-6)
    summary = classify_heads(t.assign(delta_loss=t["delta_loss"].abs()), tol=1e-5).set_index("head")
    assert summary.loc[0, "composition"] == "K" and summary.loc[1, "composition"] == "V"


@pytest.mark.parametrize("base", [[match_clamp(layer=1, head=0)], [knockout_heads(layer=1, heads=[1])]],
                         ids=["pattern_clamp", "value_knockout"])
def test_composition_keeps_the_arms_interventions(task, batch, base):
    """The reference row and the preserving ablations' clean passes include the arm's own interventions."""
    model = kv_model(task)
    t = composition(model, batch, task, layer=0, base=base)
    d = {(h, a): v for h, a, v in zip(t["head"], t["ablation"], t["delta_loss"])}
    assert t.loc[t["ablation"] == "none", "loss"].item() == pytest.approx(float(evaluate(model, batch, task, base).loss[0]))
    # known answers as without a base: a clean pass that ignored the base would undo the clamp / knockout here
    assert d[(0, "pattern_preserving")] == pytest.approx(0.0, abs=1e-6)
    assert d[(1, "value_preserving")] == pytest.approx(0.0, abs=1e-6)

def test_classify_and_ablation_names():
    assert classify(0.0, 0.5) == "K" and classify(0.5, 0.0) == "V"
    assert classify(0.3, 0.4) == "both" and classify(0.001, 0.002) == "none" and classify(math.nan, 1.0) == "none"
    ivs = ablations(0, 1)
    assert ivs["pattern_preserving"].preserve == "patterns" and ivs["value_preserving"].preserve == "values"
    assert len({iv.name for iv in ivs.values()}) == 3


# --------------------------------------------------------------------------- progress measures


def test_progress_measures_null_and_positive(task, batch):
    model = tiny(task)
    silence_head(model, 1, 1)
    t = progress_measures(model, batch, task, layer=1)
    loss = {(c, h): v for c, h, v in zip(t["clamp"], t["head"], t["loss"])}
    assert set(loss) == {("none", -1), ("layer1", -1), ("match", 0), ("match", 1), ("match_all", -1)}
    assert loss[("none", -1)] == pytest.approx(float(evaluate(model, batch, task).loss[0]))
    assert loss[("match", 1)] == pytest.approx(loss[("none", -1)], abs=1e-6)  # clamping a silent head: nothing
    assert loss[("match", 0)] != pytest.approx(loss[("none", -1)], abs=1e-6)
    assert loss[("match_all", -1)] == pytest.approx(loss[("match", 0)], abs=1e-6)
    assert loss[("layer1", -1)] != pytest.approx(loss[("none", -1)], abs=1e-6)


def test_progress_measures_skip_knocked_out_heads_and_clamps_in_base(task, batch):
    base = [knockout_heads(layer=1, keep=[0]), match_clamp(layer=1, head=0)]
    assert knocked_out(base, 1, 2) == {1}
    t = progress_measures(tiny(task), batch, task, layer=1, base=base)
    assert set(t["clamp"]) == {"none", "layer1"}  # the match clamp is already part of the arm
    assert set(progress_clamps(1, [0])) == {("layer1", -1), ("match", 0), ("match_all", -1)}


def test_cli_registers_analyse():
    from clamp.cli import main

    with pytest.raises(SystemExit) as e:
        main(["analyse", "--help"])
    assert e.value.code == 0
