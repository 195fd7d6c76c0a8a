"""A Hugging Face GPT-2 (2 layers, MLPs on) under Singh et al.'s clamps: does the match clamp still remove the plateau?

The quickstart's question on a model clamp did not write: a tiny ``GPT2LMHeadModel``
built from a ``GPT2Config`` (no download; eager attention, so the adapter can reach
the pattern), fed the few-shot task through clamp's item/label embedding, with only
one layer-2 head active (the other layer-2 heads' values zeroed).

- ``control``: nothing else clamped.
- ``match_clamp``: the active head's query row clamped to the oracle induction pattern.
- ``prev_token``: layer-1 head 0's pattern clamped to the perfect previous-token pattern.

Foreign models train one run per process (no packing); this finishes in a few
minutes on a laptop CPU:

    clamp run studies/hf_gpt2_match.py
"""

from clamp import Arm, FewShotConfig, Study, hf_gpt2, knockout_heads, match_clamp, prev_token_pattern_clamp

model = hf_gpt2(n_layer=2, n_head=4, n_embd=32)  # MLPs on (n_inner = 4 * n_embd), learned positions
task = FewShotConfig(n_classes=50, d_in=64)
one_head = knockout_heads(layer=1, keep=[0])

STUDY = Study(
    name="hf_gpt2_match",
    description=__doc__.split("\n\n")[1],
    arms=[
        Arm(name="control", model=model, task=task, lr=1e-3, interventions=[one_head],
            description="HF GPT-2, one active layer-2 head, nothing clamped"),
        Arm(name="match_clamp", model=model, task=task, lr=1e-3, interventions=[one_head, match_clamp(layer=1, head=0)],
            description="same, with the head's query row clamped to the oracle induction pattern"),
        Arm(name="prev_token", model=model, task=task, lr=1e-3,
            interventions=[one_head, prev_token_pattern_clamp(layer=0, head=0)],
            description="same, with layer-1 head 0's pattern clamped to the previous-token pattern"),
    ],
    seeds=[0, 1, 2],
    n_sequences=16_000,
    eval_every=500,
    eval_size=256,
    checkpoint_every=4_000,
    heatmap_heads=["L0H0", "L1H0"],
)
