"""Quickstart: does clamping the match subcircuit remove the plateau? (Singh et al. 2024, one layer-2 head)

Both arms train Singh et al.'s few-shot task on a 2-layer attention-only model
in which only one layer-2 head is active (the other layer-2 heads are knocked
out by zeroing their values), so that head has to become the induction head.

- ``control``: nothing else; the model must learn all three subcircuits
  (previous-token, match, copy), and sits on a plateau near ln 2 first.
- ``match_clamp``: the active head's query row is clamped to the oracle
  induction pattern from the first step, leaving only the copy subcircuit to
  learn; the plateau disappears and the loss falls below 0.4 ln 2 much sooner.

A smaller model and a higher learning rate than the paper's make this finish in
a few minutes on a laptop CPU:

    clamp run studies/quickstart.py
"""

from clamp import Arm, FewShotConfig, ModelConfig, Study, knockout_heads, match_clamp

model = ModelConfig(n_layers=2, n_heads=4, d_model=32)
task = FewShotConfig(n_classes=50, d_in=64)
one_head = knockout_heads(layer=1, keep=[0])

STUDY = Study(
    name="quickstart",
    description=__doc__.split("\n\n")[1],
    arms=[
        Arm(name="control", model=model, task=task, lr=1e-3, interventions=[one_head],
            description="one active layer-2 head, nothing clamped"),
        Arm(name="match_clamp", model=model, task=task, lr=1e-3, interventions=[one_head, match_clamp(layer=1, head=0)],
            description="same, with the head's query row clamped to the oracle induction pattern"),
    ],
    # 5 seeds per arm: the smallest p an exact test can reach is 2/C(10,5) = 0.0079 (with 3 it is 0.1,
    # so no 3-seed design can reach alpha = 0.05 whatever the data)
    seeds=[0, 1, 2, 3, 4],
    n_sequences=32_000,
    eval_every=500,
    eval_size=256,
    checkpoint_every=5_000,
    heatmap_heads=["L0H0", "L1H0"],
)
