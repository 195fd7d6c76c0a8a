"""Per-seed grafts (issue 20, item 4): each run of a packed arm is grafted from the same seed's donor run.

The donors are a real donor study (3 seeds, 64 sequences, checkpoints every 32) run by the runner into a
temporary results folder, so the donor layout is the one ``clamp run`` writes.  Expected values are
computed independently, from the checkpoint files loaded by hand.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest
import torch

import clamp
from clamp.errors import ConfigError
from clamp.execution.checkpoint import merge_states
from clamp.execution.runner import run_study
from clamp.interventions import GraftOutput, GraftParams, Window, intervention_from_dict, make_intervener, replace_windows
from clamp.interventions.donors import Donor, per_seed_donor_model
from clamp.model.config import ModelConfig
from clamp.model.transformer import Transformer
from clamp.study.design import Arm, Study, StudyError
from clamp.study.keys import canonical
from clamp.tasks import FewShotConfig
from clamp.tasks.measures import per_run_loss
from clamp.training.config import TrainConfig
from clamp.training.trainer import Trainer

MODEL = ModelConfig(n_layers=2, n_heads=2, d_model=8)
TASK = FewShotConfig(n_classes=10, d_in=8, n_heldout_classes=4, n_heldout_exemplars=2)
TRAIN = TrainConfig(n_sequences=64, batch_size=16, lr=1e-3, eval_every=32, eval_size=16)
SEEDS = [0, 1, 2]
AT = 32
SITE = "blocks.0.hook_resid_post"


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    """A donor study's results folder: arm ``control``, seeds 0..2, checkpoints at 32 and 64."""
    out = tmp_path_factory.mktemp("donors")
    study = Study(name="donor", arms=[Arm(name="control", model=MODEL, task=TASK, lr=3e-3, batch_size=16)],
                  seeds=SEEDS, n_sequences=64, eval_every=32, eval_size=16, checkpoint_every=32)
    assert run_study(study, out=out, jobs=1, quiet=True, analyse=False) == 0
    return out / "donor"


def donor(results: Path) -> Donor:
    return Donor(results=str(results), arm="control", at=AT)


def file_of(results: Path, seed: int) -> Path:
    return results / "runs" / "control" / f"seed{seed}" / "checkpoints" / f"{AT:012d}.pt"


def by_hand(results: Path, seeds: list[int]) -> Transformer:
    """The donor model built from the checkpoint files directly (run r = seed seeds[r])."""
    states = [torch.load(file_of(results, s), weights_only=True)["model"] for s in seeds]
    m = Transformer(MODEL.resolve(TASK.build().dims()), seeds)
    m.load_state_dict({k: torch.cat([st[k] for st in states]) for k in states[0]})
    return m


def trainer(ivs, seeds=SEEDS) -> Trainer:
    return Trainer(MODEL, TASK, TRAIN, seeds, intervener_factory=make_intervener(ivs, TASK.build()) if ivs is not None else None)


# --------------------------------------------------------------------------- positive


@pytest.mark.parametrize("seeds", [SEEDS, [2, 0]])
def test_graft_output_takes_each_runs_own_seed(results, seeds):
    iv = GraftOutput(site=SITE, donor=donor(results))
    t = trainer([iv], seeds)
    batch = t.next_batch()
    _, cache = t.intervener.forward(batch, 0, [SITE], True)
    with torch.no_grad():
        _, want = by_hand(results, seeds).run_with_cache(batch, [SITE])
    torch.testing.assert_close(cache[SITE], want[SITE], rtol=1e-5, atol=1e-6)
    # and not another seed's: the donors of different seeds differ, so run r matches only its own seed's
    with torch.no_grad():
        _, swapped = by_hand(results, seeds[::-1]).run_with_cache(batch, [SITE])
    assert not torch.allclose(cache[SITE][0], swapped[SITE][0])
    assert not torch.allclose(cache[SITE][0], cache[SITE][-1])


def test_graft_params_are_each_seeds_donor_block(results):
    iv = GraftParams(layer=1, donor=donor(results))
    t = trainer([iv])
    # the donor's parameters are the seed's checkpoint, run by run
    got = per_seed_donor_model(t.model, iv.donor).state_dict()
    for r, s in enumerate(SEEDS):
        ck = torch.load(file_of(results, s), weights_only=True)["model"]
        for k, v in ck.items():
            assert torch.equal(got[k][r : r + 1], v), (s, k)
    w = "blocks.1.attn.W_Q.weight"
    assert not torch.equal(got[w][0], got[w][1]) and not torch.equal(got[w][1], got[w][2])
    # the block's output is the seed's donor block on this model's input
    batch = t.next_batch()
    logits, cache = t.intervener.forward(batch, 0, ["blocks.1.hook_resid_pre", "blocks.1.hook_resid_post"], True)
    with torch.no_grad():
        want = by_hand(results, SEEDS).blocks[1](cache["blocks.1.hook_resid_pre"])
    torch.testing.assert_close(cache["blocks.1.hook_resid_post"], want, rtol=1e-5, atol=1e-6)
    loss = per_run_loss(logits, batch)
    assert (loss - per_run_loss(t.model(batch), batch)).abs().min() > 1e-7
    torch.autograd.backward(loss.sum())
    own = t.model.blocks[1].attn.W_Q.weight.grad
    assert own is None or torch.count_nonzero(own) == 0  # the model's own block learns nothing while grafted


# --------------------------------------------------------------------------- null


@pytest.mark.parametrize("make", [lambda d: GraftOutput(site=SITE, donor=d), lambda d: GraftParams(layer=1, donor=d)])
def test_donor_equal_to_own_state_changes_nothing(results, make):
    t = trainer([make(donor(results))])
    states = [torch.load(file_of(results, s), weights_only=True) for s in SEEDS]
    t.model.load_state_dict(merge_states(states)["model"])  # the model now IS its seeds' donors
    batch = t.next_batch()
    logits, _ = t.intervener.forward(batch, 0, (), True)
    with torch.no_grad():
        plain = t.model(batch)
    torch.testing.assert_close(logits.detach(), plain, rtol=0, atol=1e-6)


def test_disabled_graft_is_bit_identical(results):
    def history(t: Trainer) -> tuple[dict, dict]:
        rows = {}
        t.run(on_eval=lambda seen, m: rows.__setitem__(seen, {k: v for k, v in m.items() if not k.startswith(("fired/", "interventions/"))}))
        return rows, t.model.state_dict()

    base_rows, base_state = history(trainer(None))
    iv = GraftOutput(site=SITE, donor=donor(results), windows=[Window(start=10**9)])
    rows, state = history(trainer([iv]))
    assert rows.keys() == base_rows.keys()
    for seen in rows:
        for k, v in base_rows[seen].items():
            assert torch.equal(rows[seen][k], v), (k, seen)
    for k, v in base_state.items():
        assert torch.equal(state[k], v), k


# --------------------------------------------------------------------------- no leak


@pytest.mark.parametrize("make", [lambda d: GraftOutput(site=SITE, donor=d), lambda d: GraftParams(layer=1, donor=d)])
def test_nothing_remains_after_the_window(results, make):
    iv = replace_windows(make(donor(results)), [Window(start=0, stop=32)])
    t = trainer([iv])
    fired = []
    t.run(on_eval=lambda seen, m: fired.append((seen, m[f"fired/{iv.name}"][0].item())))
    assert fired == [(0, 1.0), (32, 2.0), (64, 0.0)]
    for name, m in t.model.named_modules():
        assert not m._forward_hooks and not m._forward_pre_hooks, name
    fresh = Transformer(t.model.cfg, t.model.seeds)
    fresh.load_state_dict(t.model.state_dict())
    batch = t.next_batch()
    logits, _ = t.intervener.forward(batch, t.seen, (), True)
    assert torch.equal(logits, fresh(batch))


# --------------------------------------------------------------------------- refused before training


def graft_study(results: Path, seeds=SEEDS, at=AT, arm="control") -> Study:
    iv = GraftParams(layer=1, donor=Donor(results=str(results), arm=arm, at=at), windows=[Window(start=0, stop=16)])
    return Study(name="grafted", arms=[Arm(name="control", model=MODEL, task=TASK, lr=1e-3, batch_size=16),
                                       Arm(name="graft", model=MODEL, task=TASK, lr=1e-3, batch_size=16, interventions=[iv])],
                 seeds=seeds, n_sequences=32, eval_every=16, eval_size=16, checkpoint_every=32)


@pytest.mark.parametrize("case, fragment", [
    ("seed", "runs/control/seed3 does not exist"),     # the donor study has no seed 3
    ("at", "000000000048.pt does not exist"),          # no checkpoint at 48: the message lists those there are
    ("arm", "no run of donor arm 'nope'"),             # no such donor arm
])
def test_missing_donor_is_refused_before_training(results, tmp_path, case, fragment):
    study = {"seed": lambda: graft_study(results, seeds=[0, 1, 2, 3]),
             "at": lambda: graft_study(results, at=48),
             "arm": lambda: graft_study(results, arm="nope")}[case]()
    with pytest.raises(StudyError) as e:
        run_study(study, out=tmp_path, jobs=1, quiet=True, analyse=False)
    assert fragment in str(e.value)
    assert "graft_params_L1" in str(e.value)
    if case == "at":
        assert "checkpoints at [0, 32, 64]" in str(e.value)
    assert not (tmp_path / "grafted" / "runs").exists()  # nothing trained, nothing written


# --------------------------------------------------------------------------- run.json


def test_run_json_records_each_runs_donor(results, tmp_path):
    assert run_study(graft_study(results), out=tmp_path, jobs=1, quiet=True, analyse=False) == 0
    for s in SEEDS:
        rec = json.loads((tmp_path / "grafted" / "runs" / "graft" / f"seed{s}" / "run.json").read_text())
        assert rec["status"] == "finished"
        [g] = rec["grafts"]
        assert g["intervention"] == "graft_params_L1" and g["donor_seed"] == s and g["at"] == AT
        assert g["donor_arm"] == "control"
        assert Path(g["donor_path"]) == file_of(results, s).resolve()
        assert g["donor_sha256"] == hashlib.sha256(file_of(results, s).read_bytes()).hexdigest()[:16]
        plain = json.loads((tmp_path / "grafted" / "runs" / "control" / f"seed{s}" / "run.json").read_text())
        assert "grafts" not in plain


# --------------------------------------------------------------------------- data: JSON, frozen, keys


def test_json_round_trip_and_frozen():
    d = clamp.Donor(results="results/q", arm="control", at=512)
    for iv in (GraftOutput(site=SITE, heads=None, donor=d), GraftParams(layer=1, donor=d, windows=[(0, 100)])):
        text = json.dumps(iv.to_dict())
        back = intervention_from_dict(json.loads(text))
        assert back == iv and back.donor == d and isinstance(back.donor, Donor)
        with pytest.raises(dataclasses.FrozenInstanceError):
            iv.donor = None  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.at = 3  # type: ignore[misc]


def test_run_keys_of_checkpoint_grafts_are_unchanged():
    # donor unset: the canonical description (what a run key hashes) has no trace of the new field
    iv = GraftOutput(site=SITE, checkpoint="ck.pt")
    assert canonical(iv) == {"kind": "graft_output", "name": "graft_L0_resid_post", "site": SITE, "checkpoint": "ck.pt"}
    assert canonical(GraftParams(layer=1, checkpoint="ck.pt", checkpoint_run=0)) == {
        "kind": "graft_params", "name": "graft_params_L1", "layer": 1, "checkpoint": "ck.pt", "checkpoint_run": 0}


@pytest.mark.parametrize("kw, fragment", [
    ({}, "exactly one of checkpoint="),
    ({"checkpoint": "ck.pt", "donor": Donor(results="r", arm="a", at=0)}, "exactly one of checkpoint="),
    ({"donor": Donor(results="r", arm="a", at=0), "checkpoint_run": 1}, "leave checkpoint_run unset"),
    ({"donor": {"results": "r", "arm": "a", "at": 0, "seed": 1}}, "unknown keys ['seed']"),
    ({"donor": {"results": "r", "arm": "a", "at": -5}}, "Donor.at must be"),
])
def test_bad_donor_settings_are_refused(kw, fragment):
    with pytest.raises(ConfigError, match=None) as e:
        GraftParams(layer=0, **kw)
    assert fragment in str(e.value)


def test_checkpoint_grafts_still_validate(results):
    # the file-based source is unchanged: a valid checkpoint graft passes validation, a missing file is named
    from clamp.interventions.probe import validate_interventions

    cfg, task = MODEL.resolve(TASK.build().dims()), TASK.build()
    ck = str(file_of(results, 1))
    validate_interventions([GraftOutput(site=SITE, checkpoint=ck), GraftParams(layer=1, checkpoint=ck)], cfg, task, 64)
    validate_interventions([GraftParams(layer=0, donor=donor(results))], cfg, task, 64)
    with pytest.raises(ConfigError, match="does not exist"):
        validate_interventions([GraftParams(layer=1, checkpoint=ck + ".missing")], cfg, task, 64)
