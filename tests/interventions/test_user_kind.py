"""A user's own intervention kind, defined in a study file: registered by class, serialised by import path,
validated before training, rebuilt in spawned worker processes and on resume."""

from __future__ import annotations

import dataclasses
import json
import sys
import textwrap

import pytest

from clamp.errors import ConfigError
from clamp.interventions import Intervention, intervention_from_dict

STUDY = '''
from dataclasses import dataclass
import clamp
from clamp.interventions.effects import Compiled, Op


@dataclass(frozen=True, kw_only=True)
class FlipSign(clamp.Intervention):
    """Negate one layer's attention output."""
    layer: int

    def check(self, probe):
        return [] if 0 <= self.layer < probe.cfg.n_layers else [f"layer={{self.layer}} is out of range"]

    def compile(self, model, task):
        return Compiled([Op(f"blocks.{{self.layer}}.hook_attn_out", lambda x, ctx: -x)])


model = clamp.ModelConfig(n_layers=2, n_heads=2, d_model=8)
task = clamp.FewShotConfig(n_classes=10, d_in=8)
STUDY = clamp.Study(name="userkind", seeds=[0, 1], n_sequences=64, eval_every=32, eval_size=16, checkpoint_every=32, arms=[
    clamp.Arm(name="flip", model=model, task=task, lr=1e-3, batch_size=16,
              interventions=[FlipSign(layer={layer}, windows=[(0, 32)])])])
'''


def write(tmp_path, layer=0):
    path = tmp_path / "user_kind.py"
    path.write_text(textwrap.dedent(STUDY.format(layer=layer)))
    return path


def test_user_kind_round_trips_by_import_path(tmp_path):
    from clamp.study import load_study
    from clamp.importpath import study_module_name

    path = write(tmp_path)
    iv = load_study(path).arms[0].interventions[0]
    d = json.loads(json.dumps(iv.to_dict()))
    assert d["kind"] == f"{study_module_name(path)}:FlipSign" and d["name"] == "flipsign"
    del sys.modules[study_module_name(path)]  # a fresh process: the module is imported again by path
    back = intervention_from_dict(d)
    assert type(back).__name__ == "FlipSign" and back.to_dict() == d


def test_user_kind_is_validated_before_training(tmp_path):
    from clamp.study import StudyError, load_study

    with pytest.raises(StudyError, match=r"'flipsign' \(FlipSign\): layer=5 is out of range"):
        load_study(write(tmp_path, layer=5))


def test_only_builtins_set_a_kind_string_and_local_classes_are_refused():
    with pytest.raises(TypeError, match="leave `kind` unset"):
        @dataclasses.dataclass(frozen=True, kw_only=True)
        class Mine(Intervention):
            kind = "mine"

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Local(Intervention):
        pass
    with pytest.raises(ConfigError, match="define it at module level"):
        Local().to_dict()


# Training in spawned worker processes (and on resume) with a user kind: tests/interventions/test_e2e.py.
