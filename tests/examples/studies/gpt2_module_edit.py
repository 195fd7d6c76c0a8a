"""A tiny Hugging Face GPT-2 with a ModuleEdit zeroing its first MLP's output, and no heatmap_heads.

The report used to crash on this study (KeyError 'n_heads' in the attention heat map) and the page
described the model as 'NoneL x NoneH, d=None'.
"""

import clamp

model = clamp.hf_gpt2(n_layer=2, n_head=2, n_embd=16)
task = clamp.FewShotConfig(n_classes=10, d_in=8, n_heldout_classes=4, n_heldout_exemplars=2)
no_mlp0 = clamp.ModuleEdit(name="no_mlp0", module="transformer.h.0.mlp", method="zero")

STUDY = clamp.Study(
    name="gpt2_module_edit",
    arms=[clamp.Arm(name="control", model=model, task=task, lr=1e-3),
          clamp.Arm(name="no_mlp0", model=model, task=task, lr=1e-3, interventions=[no_mlp0])],
    seeds=[0], n_sequences=256, eval_every=64, eval_size=32, checkpoint_every=128,
)
