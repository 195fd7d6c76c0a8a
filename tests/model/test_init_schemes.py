"""Initialisation schemes (clamp.model.init): the authors' distributions, per-parameter streams, records."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from clamp.errors import ConfigError
from clamp.model import init as init_schemes
from clamp.model.config import ModelConfig
from clamp.model.transformer import Transformer
from clamp.rng import stream
from clamp.tasks import FewShotConfig
from helpers import ROOT

TRUNC_STD = 0.8796256610342398  # sd of a standard normal truncated to [-2, 2]
TRUNC_EXCESS_KURTOSIS = -0.6344632828703505  # its excess kurtosis (uniform: -1.2, normal: 0)
FLAGSHIP = ModelConfig(n_layers=2, n_heads=8, d_model=64, init="singh2024")


def _flagship(n_labels: int = 5, seeds=(0,), cfg: ModelConfig = FLAGSHIP) -> Transformer:
    return Transformer(cfg.resolve(FewShotConfig(n_labels=n_labels).build().dims()), list(seeds))


def _expected(name: str) -> tuple[str, float, float]:
    """(kind, sd after truncation, bound) of Singh et al.'s scheme for a flagship parameter, written out by hand."""
    if name == "token_embed":
        return "tn", 0.02 * TRUNC_STD, 0.04
    if name.endswith("ln1.weight") or name == "ln_final.weight":
        return "ones", 0.0, 0.0
    if name.endswith(".bias"):
        return "zeros", 0.0, 0.0
    fan_in = {"item_embed.weight": 512, "unembed.weight": 64}.get(name, 64)  # q/k/v: d_model; W_O: H * d_head
    sd = 1 / math.sqrt(fan_in)
    return "tn", sd, 2 * sd / TRUNC_STD


def test_singh2024_draws_every_parameter_from_the_stated_distribution():
    model = _flagship(seeds=range(8))  # 8 runs pooled: at least 2,560 draws per parameter
    seen = set()
    for name, p in model.named_parameters():
        kind, sd, bound = _expected(name)
        x = p.detach().double().flatten()
        seen.add(kind)
        if kind == "ones":
            assert torch.equal(p, torch.ones_like(p)), name
            continue
        if kind == "zeros":
            assert torch.equal(p, torch.zeros_like(p)), name
            continue
        n = x.numel()
        assert x.abs().max() <= bound * (1 + 1e-6), (name, float(x.abs().max()), bound)  # truncation respected
        assert x.abs().max() > 0.9 * bound, name  # ... and reached: not a narrower distribution
        assert abs(float(x.mean())) < 4 * sd / math.sqrt(n), name
        assert float(x.std()) == pytest.approx(sd, rel=0.05), name
        z = (x - x.mean()) / x.std()
        assert float((z**4).mean() - 3) == pytest.approx(TRUNC_EXCESS_KURTOSIS, abs=0.25), name  # not uniform, not normal
    assert seen == {"tn", "ones", "zeros"}


def test_legacy_scheme_is_the_default_and_unchanged():
    """init='torch' is today's scheme: N(0, 1) token embedding, U(+-1/sqrt(fan_in)) weights, one shared stream."""
    assert ModelConfig().init == "torch"
    model = _flagship(seeds=[0], cfg=ModelConfig())
    gen = torch.Generator().manual_seed(0)
    assert torch.equal(model.token_embed[0], torch.randn(5, 64, generator=gen))  # first draw of the shared stream
    w = model.item_embed.weight[0]
    assert torch.equal(w, (torch.rand(512, 64, generator=gen) * 2 - 1) * (1.0 / math.sqrt(512)))


def test_changing_n_labels_leaves_every_non_label_parameter_bit_identical():
    a, b = _flagship(n_labels=5, seeds=[3, 7]), _flagship(n_labels=10, seeds=[3, 7])
    label_params = {"token_embed", "unembed.weight", "unembed.bias"}  # their shapes depend on n_labels
    pa, pb = dict(a.named_parameters()), dict(b.named_parameters())
    assert pa.keys() == pb.keys()
    for name in pa:
        if name not in label_params:
            assert torch.equal(pa[name], pb[name]), name
    assert pa["token_embed"].shape != pb["token_embed"].shape
    # The legacy scheme's shared stream is why the option exists: there, a label shifts every later draw.
    la, lb = _flagship(5, [3], ModelConfig()), _flagship(10, [3], ModelConfig())
    assert not torch.equal(la.item_embed.weight, lb.item_embed.weight)


def test_singh2024_packed_run_equals_single_run():
    packed = _flagship(seeds=[3, 1, 4])
    for r, seed in enumerate([3, 1, 4]):
        single = _flagship(seeds=[seed]).state_for_run(0)
        for k, v in packed.state_for_run(r).items():
            assert torch.equal(v, single[k]), k
    assert not torch.equal(packed.state_for_run(0)["item_embed.weight"], packed.state_for_run(1)["item_embed.weight"])


def test_init_field_is_left_out_of_the_dict_at_its_default():
    assert "init" not in ModelConfig().to_dict()  # run keys of existing studies unchanged
    assert set(ModelConfig().to_dict()) == {"n_layers", "n_heads", "d_model", "d_head", "attn_only", "d_mlp", "layernorm",
                                           "positions", "rope_base", "d_in", "d_vocab", "d_out", "n_ctx"}
    d = FLAGSHIP.to_dict()
    assert d["init"] == "singh2024" and ModelConfig.from_dict(d) == FLAGSHIP
    with pytest.raises(ConfigError, match="init"):
        ModelConfig(init="xavier")


def test_a_parameter_without_a_rule_is_an_error():
    model = _flagship()
    model.blocks[0].attn.extra = nn.Parameter(torch.empty(1, 8))  # a parameter no rule knows
    with pytest.raises(ConfigError, match="blocks.0.attn.extra"):
        init_schemes.init_run(model, 0, 0)


def test_the_resolved_record_shows_the_scheme():
    from clamp.study import Arm, Study
    from clamp.study.keys import arm_record
    from clamp.study.keys import run_key

    task = FewShotConfig(n_classes=10, d_in=8)
    legacy = Arm(name="a", model=ModelConfig(n_layers=1, n_heads=2, d_model=8), task=task)
    new = Arm(name="b", model=ModelConfig(n_layers=1, n_heads=2, d_model=8, init="singh2024"), task=task)
    study = Study(name="s", arms=[legacy, new], n_sequences=64, eval_every=32)
    assert arm_record(study, legacy)["init"] == "torch" and "init" not in arm_record(study, legacy)["model"]
    assert arm_record(study, new)["init"] == "singh2024" and arm_record(study, new)["model"]["init"] == "singh2024"
    assert run_key(study, legacy, 0) != run_key(study, new, 0)


def test_streams_are_named_draws():
    a = torch.rand(4, generator=stream(1, "x"))
    assert torch.equal(a, torch.rand(4, generator=stream(1, "x")))
    assert not torch.equal(a, torch.rand(4, generator=stream(1, "y")))
    assert not torch.equal(a, torch.rand(4, generator=stream(2, "x")))


def test_the_flagship_studies_use_the_authors_scheme():
    """What the moments test above checks is what the flagship studies train."""

    from clamp.study import load_study

    root = ROOT / "studies"
    for name in ("singh2024_subcircuits.py", "singh2024_full_model.py"):
        for arm in load_study(root / name).arms:
            assert arm.model.init == "singh2024" and arm.task.streams == "independent", (name, arm.name)
            assert arm.model.resolve(arm.task.build().dims()) == FLAGSHIP.resolve(FewShotConfig().build().dims())


@pytest.mark.parametrize("kw", [dict(attn_only=False, positions="learned"), dict(layernorm=False, positions="none")])
def test_every_architecture_option_has_a_rule(kw):
    cfg = ModelConfig(n_layers=1, n_heads=2, d_model=8, init="singh2024", **kw)
    model = Transformer(cfg.resolve(FewShotConfig(n_classes=10, d_in=8).build().dims()), [0])
    names = dict(model.named_parameters())
    if "pos_embed" in names:
        assert names["pos_embed"].abs().max() <= 0.04 and names["pos_embed"].abs().max() > 0
    if "blocks.0.mlp_in.bias" in names:
        assert torch.equal(names["blocks.0.mlp_in.bias"], torch.zeros_like(names["blocks.0.mlp_in.bias"]))
