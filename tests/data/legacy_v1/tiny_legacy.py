"""A tiny study whose results folder (tests/data/legacy_v1/results) was written by clamp 9f9b852, before run keys v2.

The test that uses it checks that today's code recognises those finished runs and reruns nothing.
"""

from clamp.interventions import knockout_heads, match_clamp
from clamp.model import ModelConfig
from clamp.study import Arm, Study
from clamp.tasks import FewShotConfig

MODEL = ModelConfig(n_layers=2, n_heads=2, d_model=8)
TASK = FewShotConfig(n_classes=10, d_in=8, n_heldout_classes=4, n_heldout_exemplars=2)
ONE_HEAD = knockout_heads(layer=1, keep=[0])

STUDY = Study(
    name="tiny_legacy",
    arms=[Arm(name="control", model=MODEL, task=TASK, lr=1e-3, batch_size=16, interventions=[ONE_HEAD]),
          Arm(name="match", model=MODEL, task=TASK, lr=1e-3, batch_size=16,
              interventions=[ONE_HEAD, match_clamp(layer=1, head=0)])],
    seeds=[0, 1],
    n_sequences=64,
    eval_every=32,
    eval_size=16,
    checkpoint_every=64,
)
