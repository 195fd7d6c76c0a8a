"""The intervention zoo: every built-in kind, in a configuration that does nothing, is refused before training;
in one that does something, ``fired/<name>`` counts exactly the forwards inside its windows.

``fired`` means "changed the tensor it edits" (issue 12): an edit that reproduces the values already there
does not count, and validation applies each intervention alone to a probe batch and refuses one that
changes nothing, naming the intervention, the site and why.
"""

from __future__ import annotations

import dataclasses
import textwrap

import pytest
import torch

from clamp.errors import ConfigError
from clamp.interventions import (
    Clamp, FunctionClamp, GraftOutput, GraftParams, HeadScale, IdealLayer1, Knockout, NnsightIntervention,
    PatternClamp, PerfectCopy, PreservingAblation, Window, make_intervener, replace_windows, validate_interventions,
)
from clamp.interventions.probe import PROBE_SEED
from clamp.interventions.effects import Compiled, Op
from clamp.interventions.registry import builtin_kinds
from clamp.model.config import ModelConfig
from clamp.model.transformer import Transformer
from clamp.tasks import FewShotConfig
from clamp.training.config import TrainConfig
from clamp.training.trainer import Trainer
from helpers.user_code import kinds as apply_kinds
from helpers.user_code import read_only, sharpen

MODEL = ModelConfig(n_layers=2, n_heads=2, d_model=8)
TASK = FewShotConfig(n_classes=10, d_in=8, n_heldout_classes=4, n_heldout_exemplars=2)


def first_row(batch) -> torch.Tensor:
    """Row 0 of a causal pattern, [R, B, 1 head, 1 row, T]: what the model already has there."""
    R, B, T = batch.tokens.shape
    p = torch.zeros(R, B, 1, 1, T)
    p[..., 0] = 1.0
    return p


def _identity(kind: type) -> type:
    """``kind`` with every edit replaced by the identity (for kinds no configuration makes a no-op)."""
    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Identity(kind):
        def compile(self, model, task):
            real = super().compile(model, task)
            return Compiled([Op(op.site, lambda x, ctx: x, edits=op.edits) for op in real.ops],
                            clean_sites=real.clean_sites)
    Identity.__qualname__ = f"Identity{kind.__name__}"
    return Identity


@pytest.fixture(scope="module")
def probe_copy(tmp_path_factory) -> str:
    """A checkpoint holding exactly the probe model's weights: grafting it changes nothing on the probe."""
    path = tmp_path_factory.mktemp("zoo") / "probe.pt"
    torch.save(Transformer(MODEL.resolve(TASK.build().dims()), [PROBE_SEED]).state_dict(), path)
    return str(path)


def noops(ckpt: str) -> dict[str, tuple]:
    """Kind -> (an intervention of it that changes nothing, the site named, a fragment of the reason)."""
    return {
        "Clamp": (Clamp(site="blocks.0.attn.hook_pattern", heads=(0,), positions=(0,), value=[1, 0, 0, 0, 0]),
                  "blocks.0.attn.hook_pattern", "equals what the model computes"),
        "PatternClamp": (PatternClamp(layer=1, heads=(0,), pattern="induction", positions=(0, 1)),
                         "blocks.1.attn.hook_pattern", "positions (0, 1) contain no query row of an induction pattern"),
        "FunctionClamp": (FunctionClamp(site="blocks.0.attn.hook_pattern", heads=(1,), positions=(0,), fn=first_row),
                          "blocks.0.attn.hook_pattern", "first_row returns the values the model already computes"),
        "Knockout": (Knockout(site="blocks.1.attn.hook_pattern", positions=(0,), method="mean"),
                     "blocks.1.attn.hook_pattern", "already equal to its mean"),
        "GraftOutput": (GraftOutput(site="blocks.0.hook_resid_post", checkpoint=ckpt),
                        "blocks.0.hook_resid_post", "computes the same values there"),
        "GraftParams": (GraftParams(layer=1, checkpoint=ckpt), "blocks.1.hook_resid_post", "has the model's own parameters"),
        "HeadScale": (HeadScale(layer=0, heads=(1,), scale=1.0), "blocks.0.attn.hook_z", "scale=1 and noise=0"),
        "NnsightIntervention": (NnsightIntervention(site="blocks.1.attn.hook_pattern", fn=read_only),
                                "blocks.1.attn.hook_pattern", "assigned no new value"),
        # No configuration of these three changes nothing on a real model; their identity-edit variants show the
        # probe catches them all the same.
        "IdealLayer1": (_identity(IdealLayer1)(), "blocks.1.hook_resid_pre, blocks.1.attn.hook_q, blocks.1.attn.hook_k",
                        "reproduces the values"),
        "PerfectCopy": (_identity(PerfectCopy)(), "hook_logits", "reproduces the values"),
        "PreservingAblation": (_identity(PreservingAblation)(layer=0, heads=(0,), preserve="patterns"),
                               "blocks.0.attn.hook_z, blocks.1.attn.hook_pattern", "reproduces the values"),
    }


# ModuleEdit addresses a foreign model's modules (it is refused on the built-in model); its no-op case is
# tested on a tiny Hugging Face GPT-2 below.
FOREIGN_ONLY = {"ModuleEdit"}


def test_the_zoo_covers_every_builtin_kind(probe_copy):
    assert set(noops(probe_copy)) == set(builtin_kinds()) - FOREIGN_ONLY


def test_a_noop_module_edit_is_refused_when_its_study_loads(tmp_path):
    pytest.importorskip("transformers")
    from clamp.study import StudyError, load_study

    path = tmp_path / "noop_module_edit.py"
    path.write_text(textwrap.dedent('''
        import clamp
        STUDY = clamp.Study(name="noop_edit", seeds=[0], n_sequences=64, eval_every=32, arms=[clamp.Arm(
            name="edit", model=clamp.hf_gpt2(n_layer=1, n_head=2, n_embd=16),
            task=clamp.FewShotConfig(n_classes=10, d_in=8),
            interventions=[clamp.ModuleEdit(module="transformer.h.0.mlp", io="output", index="[:, 0:0]",
                                            method="zero")])])
    '''))
    with pytest.raises(StudyError, match="unchanged"):
        load_study(path, probe=True)


@pytest.mark.parametrize("kind", sorted(set(builtin_kinds()) - FOREIGN_ONLY))
def test_a_noop_is_refused_before_training(kind, probe_copy):
    iv, site, why = noops(probe_copy)[kind]
    task = TASK.build()
    with pytest.raises(ConfigError) as err:
        validate_interventions([iv], MODEL.resolve(task.dims()), task, 1000)
    msg = str(err.value)
    assert repr(iv.name) in msg and f"it leaves {site} unchanged" in msg and why in msg, msg


def test_a_noop_in_a_study_file_is_refused_when_it_loads(tmp_path):
    from clamp.study import StudyError, load_study

    path = tmp_path / "noop.py"
    path.write_text(textwrap.dedent('''
        import clamp
        STUDY = clamp.Study(name="noop", seeds=[0], n_sequences=64, eval_every=32, arms=[clamp.Arm(
            name="match", model=clamp.ModelConfig(n_layers=2, n_heads=2, d_model=8),
            task=clamp.FewShotConfig(n_classes=10, d_in=8),
            interventions=[clamp.PatternClamp(layer=1, heads=(0,), pattern="induction", positions=(0, 1))])])
    '''))
    with pytest.raises(StudyError, match=r"positions \(0, 1\) contain no query row of an induction pattern"):
        load_study(path, probe=True)  # the probe checks (clamp run and --dry-run run them before training)


def doers(ckpt: str) -> dict[str, object]:
    out = dict(apply_kinds(ckpt))
    out["head_scale"] = HeadScale(layer=1, heads=(0,), scale=0.5, noise=0.1)
    out["nnsight"] = NnsightIntervention(site="blocks.1.attn.hook_pattern", fn=sharpen)
    return out


@pytest.fixture(scope="module")
def donor_checkpoint(tmp_path_factory) -> str:
    t = Trainer(MODEL, TASK, TrainConfig(n_sequences=32, batch_size=16, lr=1e-3, eval_every=32, eval_size=16), seeds=[5, 6])
    t.run(32)
    path = tmp_path_factory.mktemp("zoo") / "donor.pt"
    torch.save(t.state_dict(), path)
    return str(path)


def test_the_positive_zoo_covers_every_builtin_kind(donor_checkpoint):
    assert {type(iv).__name__ for iv in doers(donor_checkpoint).values()} == set(builtin_kinds()) - FOREIGN_ONLY


@pytest.mark.parametrize("key", list(doers("x")))
def test_fired_counts_the_forwards_inside_its_windows(key, donor_checkpoint):
    train = TrainConfig(n_sequences=96, batch_size=16, lr=1e-3, eval_every=32, eval_size=16)
    iv = replace_windows(doers(donor_checkpoint)[key], [Window(start=16, stop=64)])
    validate_interventions([iv], MODEL.resolve(TASK.build().dims()), TASK.build(), train.n_sequences)  # not a no-op
    t = Trainer(MODEL, TASK, train, [0, 1], intervener_factory=make_intervener([iv], TASK.build()))
    rows = []
    t.run(on_eval=lambda seen, m: rows.append((seen, m[f"fired/{iv.name}"].tolist(), m["interventions/fired"].tolist())))
    steps = list(range(0, train.n_sequences, train.batch_size))  # each step labelled by the sequences seen before it
    prev = -1
    for seen, fired, evals in rows:
        in_steps = sum(1 for s in steps if prev < s + train.batch_size <= seen and iv.active(s))
        expected = in_steps + (1 if iv.active(seen) else 0)
        assert fired == [expected, expected], (seen, fired, expected)
        assert evals == [float(iv.active(seen))] * 2
        prev = seen
    assert [r[1][0] for r in rows] == [0.0, 2.0, 2.0, 0.0]  # evals at 0, 32, 64, 96; window [16, 64)
