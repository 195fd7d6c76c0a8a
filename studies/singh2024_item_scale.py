"""Why our single-head control is slower than Singh et al.'s: the scale of the class vectors.

Our class vectors are synthetic with norm about 1 (``FewShotConfig`` default),
while the paper's items are frozen ResNet-18 features of Omniglot characters:
non-negative (ReLU) vectors with much larger norms.  The label embeddings are
N(0, 1) per dimension (norm about 8 at d_model 64), so with norm-1 items the
item information a previous-token head copies into a label position is small
next to the label's own embedding.  This study varies only the class-vector
recipe on the single-active-head control of ``singh2024_subcircuits`` (no
clamps): the default, unit-variance entries (``item_scale = sqrt(512)``), and
unit variance with a shared positive component (``shared = 0.5``) so classes
correlate as ReLU features do.

    clamp run studies/singh2024_item_scale.py
"""

import math

from clamp import Arm, FewShotConfig, ModelConfig, Study, knockout_heads

MODEL = ModelConfig(n_layers=2, n_heads=8, d_model=64)
SINGLE_HEAD = knockout_heads(layer=1, keep=[0])
SCALE = math.sqrt(512)


def _arm(name: str, task: FewShotConfig, description: str) -> Arm:
    return Arm(name=name, model=MODEL, task=task, interventions=[SINGLE_HEAD], lr=1e-5, batch_size=32,
               description=description)


STUDY = Study(
    name="singh2024_item_scale",
    description=__doc__.split("\n\n")[1],
    arms=[
        _arm("control", FewShotConfig(), "default synthetic items, norm about 1"),
        _arm("unit_variance", FewShotConfig(item_scale=SCALE), "items scaled by sqrt(512): unit-variance entries"),
        _arm("unit_variance_shared", FewShotConfig(item_scale=SCALE, shared=0.5),
             "unit-variance entries plus a shared positive component (class cosine about 0.5)"),
    ],
    seeds=[0, 1, 2],
    n_sequences=300_000,
    eval_every=2_000,
    eval_size=512,
    checkpoint_every=50_000,
    control="control",
)
