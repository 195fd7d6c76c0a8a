"""A custom intervention written with nnsight in the study file: sharpen the induction head's pattern early on.

Both arms train the quickstart's setup (Singh et al.'s few-shot task, a 2-layer
attention-only model with one active layer-2 head, ``blocks.1`` head 0).

- ``control``: nothing else.
- ``sharpen``: during the first 20,000 sequences, head 0 of layer 1 (0-indexed:
  the second layer, where the induction head forms) has every row of its
  attention pattern raised to the power 4 and renormalised, at every training
  step and evaluation: ``sharpen`` below, plain nnsight inside clamp's trace.
  Gradient flows through the edit (it is computed from the pattern).  After
  20,000 sequences the head is left alone; ``fired/sharpen`` in ``metrics.csv``
  shows when it acted.

    clamp run studies/custom_intervention.py
"""

import clamp


def sharpen(model, ctx, power: float = 4.0) -> None:
    """Raise layer 1, head 0's attention rows to ``power`` and renormalise them (nnsight syntax)."""
    pattern = model.blocks[1].attn.hook_pattern.output  # [runs, batch, heads, query, key]
    sharp = pattern.clone()  # never edit the activation in place: clone, edit the clone, assign it
    p = pattern[:, :, 0] ** power
    sharp[:, :, 0] = p / p.sum(-1, keepdim=True)
    model.blocks[1].attn.hook_pattern.output = sharp


model = clamp.ModelConfig(n_layers=2, n_heads=4, d_model=32)
task = clamp.FewShotConfig(n_classes=50, d_in=64)
one_head = clamp.knockout_heads(layer=1, keep=[0])
sharpen_early = clamp.NnsightIntervention(name="sharpen", fn=sharpen, site="blocks.1.attn.hook_pattern",
                                          kwargs={"power": 4.0}, windows=[clamp.Window(start=0, stop=20_000)])

STUDY = clamp.Study(
    name="custom_intervention",
    description=__doc__.split("\n\n")[1],
    arms=[
        clamp.Arm(name="control", model=model, task=task, lr=1e-3, interventions=[one_head],
                  description="one active layer-2 head, nothing else"),
        clamp.Arm(name="sharpen", model=model, task=task, lr=1e-3, interventions=[one_head, sharpen_early],
                  description="same, with the head's pattern sharpened (power 4) for the first 20,000 sequences"),
    ],
    seeds=[0, 1, 2],
    n_sequences=32_000,
    eval_every=500,
    eval_size=256,
    checkpoint_every=5_000,
    heatmap_heads=["L1H0"],
)
