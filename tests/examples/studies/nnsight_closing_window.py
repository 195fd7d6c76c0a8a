"""A user's nnsight intervention that stops after 256 sequences: scale layer 1 head 0's values by 0.3.

Written as a new user would from the README: a module-level function using nnsight syntax on the
packed built-in model, a constant it reads from this file, and a window that closes.
"""

import clamp

SCALE = 0.3  # read by the function: part of its fingerprint


def scale_values(model, ctx) -> None:
    """Multiply head 0's values in layer 1 by SCALE (clone, edit the clone, assign it)."""
    v = model.blocks[1].attn.hook_v.output  # [runs, batch, pos, heads, d_head]
    out = v.clone()
    out[:, :, :, 0] = v[:, :, :, 0] * SCALE
    model.blocks[1].attn.hook_v.output = out


model = clamp.ModelConfig(n_layers=2, n_heads=2, d_model=16)
task = clamp.FewShotConfig(n_classes=10, d_in=8, n_heldout_classes=4, n_heldout_exemplars=2)
scaled = clamp.NnsightIntervention(name="scaled", fn=scale_values, site="blocks.1.attn.hook_v",
                                   windows=[clamp.Window(start=0, stop=256)])

STUDY = clamp.Study(
    name="nnsight_closing_window",
    arms=[clamp.Arm(name="control", model=model, task=task, lr=1e-3),
          clamp.Arm(name="scaled", model=model, task=task, lr=1e-3, interventions=[scaled])],
    seeds=[0, 1], n_sequences=640, eval_every=64, eval_size=32, checkpoint_every=320,
)
