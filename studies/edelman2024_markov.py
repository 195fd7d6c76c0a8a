"""In-context Markov chains (Edelman et al. 2024): a unigram plateau, then a statistical induction head.

Every sequence is drawn from its own 3-state Markov chain (transition rows from
a Dirichlet(1) prior), so the next state can only be predicted from the context.
``markov/bigram_progress`` places the model between two reference predictors on
the same sequences: 0 at the in-context unigram estimate (state frequencies), 1
at the in-context bigram estimate (transition counts); the phase rule is its
crossing of 0.5.

- ``control``: 2-layer attention-only; expected to sit near the unigram solution,
  then move to the bigram one (a previous-token head in layer 0 feeding layer 1).
- ``one_layer``: 1-layer attention-only; has no previous-token head below its
  only layer, so it is expected to stay near the unigram solution.
- ``prev_clamp``: the control with layer-0 head 0 clamped to a perfect
  previous-token pattern from the start; expected to leave the plateau earlier.

    clamp run studies/edelman2024_markov.py
"""

from clamp import Arm, MarkovConfig, ModelConfig, Study, prev_token_pattern_clamp

task = MarkovConfig(n_states=3, n_ctx=64, alpha=1.0)
two = ModelConfig(n_layers=2, n_heads=2, d_model=32)
one = ModelConfig(n_layers=1, n_heads=2, d_model=32)

STUDY = Study(
    name="edelman2024_markov",
    description=__doc__.split("\n\n")[1],
    arms=[
        Arm(name="control", model=two, task=task, lr=3e-3, description="2-layer attention-only"),
        Arm(name="one_layer", model=one, task=task, lr=3e-3, description="1-layer attention-only"),
        Arm(name="prev_clamp", model=two, task=task, lr=3e-3, interventions=[prev_token_pattern_clamp(layer=0, head=0)],
            description="2-layer, layer-0 head 0 clamped to a previous-token pattern"),
    ],
    seeds=[0, 1, 2],
    n_sequences=12_000,
    eval_every=250,
    eval_size=256,
    heatmap_heads=["L0H0"],
)
