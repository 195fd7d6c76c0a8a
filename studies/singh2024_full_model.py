"""Singh et al. (2024): the full 2-layer x 8-head model, unclamped, for post-hoc analyses.

No knockouts and no clamps: all eight layer-2 heads are free to become
induction heads.  The runs are the raw material of the full-model analyses in
:mod:`clamp.analysis.posthoc` (docs/science.md §2, "Further findings"):

- induction strength of every layer-2 head at every checkpoint;
- redundancy (knock one layer-2 head out / keep one alone) and additivity
  (add heads back strongest first);
- K- vs V-composition of the layer-1 heads (pattern- vs value-preserving ablations);
- progress measures: the match and layer-1 clamps applied to every checkpoint
  (evaluation only), showing hidden progress during the plateau.

Checkpoints are every 25,000 sequences, and every 12,500 from 1e5 to 5e5
around the expected phase change (about 2.7e5 sequences in the paper): about
57 per run, each ~0.8 MB with Adam state.

Run and analyse::

    clamp run studies/singh2024_full_model.py
    clamp analyse results/singh2024_full_model
"""

from clamp import Arm, Dense, FewShotConfig, ModelConfig, Study

# Singh et al.'s initialisation and independent random streams (see singh2024_subcircuits.py).
MODEL = ModelConfig(n_layers=2, n_heads=8, d_model=64, attn_only=True, layernorm=True, positions="rope",
                    init="singh2024")
TASK = FewShotConfig(streams="independent")

STUDY = Study(
    name="singh2024_full_model",
    description=(
        "Singh et al. (2024) full model (2 layers x 8 heads, no clamps), densely checkpointed around the phase "
        "change, for the redundancy, additivity, K/V-composition and progress-measure analyses (`clamp analyse`)."
    ),
    arms=[Arm(name="full", model=MODEL, task=TASK, lr=1e-5, batch_size=32, schedule="constant",
              description="all 8 layer-2 heads active, no interventions")],
    seeds=[0, 1, 2, 3, 4],
    n_sequences=1_000_000,
    eval_every=2_000,  # 500 evaluations over 1e6 sequences; the checkpoints carry the analyses
    eval_size=512,
    checkpoint_every=25_000,
    dense=[Dense(start=400_000, stop=800_000, checkpoint_every=12_500)],  # around the phase change (≈6.2e5 with this init)
    control=None,
    heatmap_heads=["L0H0", "L1H0", "L1H1", "L1H2"],
    heatmap_at=[0, 100_000, 300_000, 1_000_000],
)
