"""Foreign models: specs as data, seeds, adapters faithful to the model, head knockouts, fused attention, the runner.

The tiny Hugging Face models are built from configs (no download).
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

import clamp
from clamp.errors import ConfigError
from clamp.execution.runner import run_study
from clamp.interventions import knockout_heads, make_intervener, match_clamp, prev_token_pattern_clamp
from clamp.model.foreign import ForeignModel, ModelSpec, model_from_dict
from clamp.study.design import Arm, Study, StudyError
from clamp.study.checks import validate_study
from clamp.study.keys import run_key
from clamp.tasks import FewShotConfig, RepeatConfig
from clamp.training.config import TrainConfig
from clamp.training.trainer import Trainer

FEWSHOT = FewShotConfig(n_classes=10, d_in=8, n_heldout_classes=4, n_heldout_exemplars=2)
REPEAT = RepeatConfig(vocab=12, half=4)
GPT2 = clamp.hf_gpt2(n_layer=2, n_head=2, n_embd=16)
LLAMA = clamp.hf_llama(num_hidden_layers=2, num_attention_heads=2, hidden_size=16, intermediate_size=32)


def build(spec: ModelSpec, task, seed: int = 0) -> ForeignModel:
    return ForeignModel(spec.resolve(task.build().dims()), [seed])


def plain_net(spec: ModelSpec, task, seed: int = 0) -> torch.nn.Module:
    """The factory's module exactly as a user would build it (eager attention, no adapter)."""
    torch.manual_seed(seed)
    return spec.resolve(task.build().dims()).build_net().eval()


def test_spec_round_trips_and_rebuilds_from_its_dict():
    spec = GPT2.resolve(FEWSHOT.build().dims())
    d = json.loads(json.dumps(spec.to_dict()))
    assert model_from_dict(d) == spec and d["kind"] == "foreign" and d["sizes"]["d_in"] == 8
    assert model_from_dict(clamp.ModelConfig().to_dict()) == clamp.ModelConfig()
    with pytest.raises(ConfigError, match="unknown keys"):
        ModelSpec.from_dict({**d, "bogus": 1})
    with pytest.raises(ConfigError, match="JSON"):
        ModelSpec(factory="clamp.model.adapters:gpt2_lm", kwargs={"x": object()})


@pytest.mark.parametrize("spec", [GPT2, LLAMA], ids=["gpt2", "llama"])
def test_seed_controls_initialisation_exactly(spec):
    a, b, c = build(spec, FEWSHOT, 3), build(spec, FEWSHOT, 3), build(spec, FEWSHOT, 4)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)
    before = torch.random.get_rng_state()
    build(spec, FEWSHOT, 5)
    assert torch.equal(before, torch.random.get_rng_state())  # the global RNG is left as it was


@pytest.mark.parametrize("spec", [GPT2, LLAMA], ids=["gpt2", "llama"])
def test_adapter_is_bit_identical_to_eager_attention(spec):
    """Token task: input_ids in, logits out, the same numbers as the unadapted model with eager attention."""
    model, net = build(spec, REPEAT), plain_net(spec, REPEAT)
    batch = REPEAT.build().sample(4, torch.Generator().manual_seed(0))
    ref = net(input_ids=batch.tokens[0], use_cache=False).logits
    assert torch.equal(model(batch)[0], ref)
    _, cache = model.run_with_cache(batch, ["blocks.0.attn.hook_pattern", "blocks.1.hook_resid_post"])
    ref_out = net(input_ids=batch.tokens[0], use_cache=False, output_attentions=True, output_hidden_states=True)
    assert torch.equal(cache["blocks.0.attn.hook_pattern"][0], ref_out.attentions[0])
    assert cache["blocks.1.hook_resid_post"].shape == (1, 4, 8, 16)


def test_fewshot_feeds_inputs_embeds_from_clamps_embedding():
    model = build(GPT2, FEWSHOT)
    batch = FEWSHOT.build().sample(4, torch.Generator().manual_seed(0))
    x = model.inputs_embeds(batch)  # [B, T, D]
    mask = batch.item_mask[0]
    torch.testing.assert_close(x[mask], model.item_embed(batch.items[0][mask]))
    torch.testing.assert_close(x[~mask], model.label_embed(batch.tokens[0][~mask]))
    logits = model(batch)
    assert logits.shape == (1, 4, 5, 5)
    assert torch.equal(logits[0], model.net(inputs_embeds=x, use_cache=False).logits)


@pytest.mark.parametrize("spec,proj", [(GPT2, lambda n, l: n.transformer.h[l].attn.c_proj),
                                       (LLAMA, lambda n, l: n.model.layers[l].self_attn.o_proj)], ids=["gpt2", "llama"])
@pytest.mark.parametrize("site", ["hook_z", "hook_v"])
def test_head_knockout_equals_zeroing_the_output_projection_input(spec, proj, site):
    """Knocking head 1 of layer 1 out through the adapter == zeroing its slice of W_O's input, bit for bit."""
    dims = FEWSHOT.build().dims()
    iv = clamp.Knockout(site=f"blocks.1.attn.{site}", heads=(1,))
    t = Trainer(GPT2 if spec is GPT2 else LLAMA, FEWSHOT, TrainConfig(n_sequences=32, batch_size=16), seeds=[0],
                intervener_factory=make_intervener([iv], FEWSHOT.build()))
    batch = t.next_batch()
    logits, _ = t.intervener.forward(batch, 0, (), True)
    ref = ForeignModel(spec.resolve(dims), [0])
    ref.load_state_dict(t.model.state_dict())
    dh = 16 // 2

    def zero_head(_m, args):
        x = args[0].clone()
        x[..., dh:2 * dh] = 0.0
        return (x,)
    handle = proj(ref.net, 1).register_forward_pre_hook(zero_head)
    try:
        expected = ref(batch)
    finally:
        handle.remove()
    assert torch.equal(logits, expected)
    assert not torch.equal(logits, ref(batch))


def test_pattern_clamp_on_fused_attention_is_rejected_before_training():
    sdpa = clamp.hf_gpt2(n_layer=2, n_head=2, n_embd=16, attn_implementation="sdpa")
    study = Study(name="s", arms=[Arm(name="a", model=sdpa, task=FEWSHOT, interventions=[prev_token_pattern_clamp(layer=0, head=0)])],
                  seeds=[0], n_sequences=64, eval_every=32)
    with pytest.raises(StudyError, match="eager") as e:
        validate_study(study)
    assert "sdpa" in str(e.value) and "prev_token_L0H0" in str(e.value)
    # without a pattern-level intervention the fused model trains (no head metrics: no pattern exists)
    ok = Study(name="s", arms=[Arm(name="a", model=sdpa, task=FEWSHOT, lr=1e-3)], seeds=[0], n_sequences=64, eval_every=32)
    validate_study(ok)
    t = Trainer(sdpa, FEWSHOT, TrainConfig(n_sequences=32, batch_size=16, eval_size=16), seeds=[0])
    t.run(32)
    assert not any(k.startswith(("prev_token/", "induction/")) for k in t.evaluate())


def test_user_module_without_adapter_rejects_head_sites():
    spec = ModelSpec(factory="helpers.tiny_model:build_tiny", adapter="none")
    task = REPEAT.build()
    with pytest.raises(ConfigError, match="no architecture adapter"):
        clamp.interventions.validate_interventions([knockout_heads(layer=1, keep=[0])], spec.resolve(task.dims()), task, 64)


def test_foreign_models_are_not_packed():
    with pytest.raises(ConfigError, match="one run"):
        Trainer(GPT2, FEWSHOT, TrainConfig(n_sequences=32, batch_size=16), seeds=[0, 1])


def _study(**kw) -> Study:
    one = knockout_heads(layer=1, keep=[0])
    base = dict(name="hf", arms=[Arm(name="control", model=GPT2, task=FEWSHOT, lr=1e-3, batch_size=16, interventions=[one]),
                                 Arm(name="match", model=GPT2, task=FEWSHOT, lr=1e-3, batch_size=16,
                                     interventions=[one, match_clamp(layer=1, head=0)])],
                seeds=[0, 1], n_sequences=128, eval_every=32, eval_size=16, checkpoint_every=64)
    base.update(kw)
    return Study(**base)


def test_runner_trains_each_foreign_run_alone_and_resumes_identically(tmp_path, monkeypatch):
    s = _study()
    assert run_study(s, out=tmp_path / "ref", jobs=1, quiet=True, analyse=False) == 0
    d = tmp_path / "ref/hf"
    for arm in ("control", "match"):
        for seed in (0, 1):
            rec = json.loads((d / "runs" / arm / f"seed{seed}" / "run.json").read_text())
            assert rec["status"] == "finished" and rec["timings"]["packed_with"] == 1 and rec["hash"] == run_key(s, s.arm(arm), seed)
            assert rec["config"]["model"]["kind"] == "foreign"
            m = pd.read_csv(d / "runs" / arm / f"seed{seed}" / "metrics.csv")
            assert {"train/loss", "induction/L1H0", "prev_token/L0H1", f"fired/{s.arm(arm).interventions[-1].name}"} <= set(m["metric"])
            ck = torch.load(d / "runs" / arm / f"seed{seed}" / "checkpoints" / "000000000064.pt", weights_only=True)
            assert ck["seen"] == 64
    # interrupted after 80 sequences, resumed from the checkpoint at 64: the same metrics, byte for byte
    original = Trainer.train_step

    def crash_after_80(self):
        if self.seen >= 80:
            raise KeyboardInterrupt
        return original(self)
    single = _study(arms=[s.arms[1]], seeds=[0])
    monkeypatch.setattr(Trainer, "train_step", crash_after_80)
    with pytest.raises(KeyboardInterrupt):
        run_study(single, out=tmp_path / "cut", jobs=1, quiet=True, analyse=False)
    monkeypatch.setattr(Trainer, "train_step", original)
    assert run_study(single, out=tmp_path / "cut", jobs=1, quiet=True, analyse=False) == 0
    rd = tmp_path / "cut/hf/runs/match/seed0"
    assert json.loads((rd / "run.json").read_text())["resumed_from"] == 64
    assert (rd / "metrics.csv").read_bytes() == (d / "runs/match/seed0/metrics.csv").read_bytes()


def test_foreign_run_failure_is_isolated(tmp_path, monkeypatch):
    original = Trainer.train_step

    def boom(self):
        if self.seeds[0].init == 1 and self.seen >= 32:
            raise RuntimeError("boom")
        return original(self)
    monkeypatch.setattr(Trainer, "train_step", boom)
    s = _study(arms=[_study().arms[0]])
    assert run_study(s, out=tmp_path, jobs=1, quiet=True, analyse=False) == 1
    runs = tmp_path / "hf/runs/control"
    assert json.loads((runs / "seed1/run.json").read_text())["status"] == "failed"
    assert json.loads((runs / "seed0/run.json").read_text())["status"] == "finished"


def test_foreign_bench_reports_every_configuration():
    from clamp.bench.foreign import run_foreign_bench

    res = run_foreign_bench(n_steps=1, rounds=1, warmup=0, packing=2, log=lambda s: None)
    assert {"builtin R=1", "builtin R=2", "hf_gpt2", "hf_gpt2 hooks", "hf_gpt2 nnsight", "nnsight/hooks (hf_gpt2)"} <= set(res)
    assert all(v > 0 for v in res.values())


def test_module_edit_is_validated_against_the_model():
    from clamp.interventions.kinds.module_edit import ModuleEdit

    task = FEWSHOT.build()
    spec = GPT2.resolve(task.dims())
    with pytest.raises(ConfigError, match="did you mean 'transformer.h.0.mlp'"):
        clamp.interventions.validate_interventions([ModuleEdit(module="transformer.h.0.mlpp")], spec, task, 64)
    with pytest.raises(ConfigError, match="keep it whole"):
        clamp.interventions.validate_interventions([ModuleEdit(module="transformer.h.0.mlp", index="[0]", method="mean")], spec, task, 64)
    with pytest.raises(ConfigError, match="broadcasts"):
        clamp.interventions.validate_interventions([ModuleEdit(module="transformer.h.0.mlp", index="[:, -1]", value=[1.0, 2.0])], spec, task, 64)
    with pytest.raises(ConfigError, match="foreign model"):
        clamp.interventions.validate_interventions([ModuleEdit(module="blocks.0.attn")], clamp.ModelConfig(n_layers=2, n_heads=2, d_model=8).resolve(task.dims()), task, 64)


@pytest.mark.parametrize("spec", [GPT2, LLAMA], ids=["gpt2", "llama"])
def test_token_task_trains_with_the_tasks_metrics(spec):
    t = Trainer(spec, REPEAT, TrainConfig(n_sequences=64, batch_size=16, lr=1e-3, eval_every=32, eval_size=16), seeds=[0])
    before = {k: v.clone() for k, v in t.model.state_dict().items()}
    rows = {}
    t.run(on_eval=lambda seen, m: rows.__setitem__(seen, m))
    assert sorted(rows) == [0, 32, 64]
    m = rows[64]
    assert {"train/loss", "loss/second_repeat", "prefix_match/L1H0", "prev_token/L0H1"} <= set(m)
    after = t.model.state_dict()
    assert all(not torch.equal(before[k], after[k]) for k in before if k.startswith("net.") and "bias" not in k)
