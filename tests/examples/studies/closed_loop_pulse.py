"""A closed-loop pulse: once a run's training loss falls below 3, knock out layer 1 head 1 for 128 sequences.

The window opens per run on its own event and closes a fixed length later: it is not 'to the end
of training'.
"""

import clamp

model = clamp.ModelConfig(n_layers=2, n_heads=2, d_model=16)
task = clamp.FewShotConfig(n_classes=10, d_in=8, n_heldout_classes=4, n_heldout_exemplars=2)
pulse = clamp.knockout_heads(layer=1, heads=[1], name="pulse",
                             windows=[clamp.Window(start=clamp.When("train/loss", "<", 3.0, duration=128))])

STUDY = clamp.Study(
    name="closed_loop_pulse",
    arms=[clamp.Arm(name="control", model=model, task=task, lr=1e-3),
          clamp.Arm(name="pulse", model=model, task=task, lr=1e-3, interventions=[pulse])],
    seeds=[0, 1], n_sequences=512, eval_every=64, eval_size=32, checkpoint_every=256,
)
