"""Singh et al. (2024), "What needs to go right for an induction head?": the subcircuit clamps.

One layer-2 head (head 0 of ``blocks.1``) is left active; the other seven are
knocked out by zeroing their values, so that one head has to do all the work
(docs/science.md §2).  Each arm then clamps a different part of the induction
circuit from initialisation, at every step and every evaluation:

=================  =======================================================  ===================
arm                clamp                                                    left to learn
=================  =======================================================  ===================
control            none                                                     A, B, C
prev_token         layer-1 head 0's pattern = perfect previous-token        step 2, B, C
layer1             ideal layer-1 circuit (ideal_layer1)                     B, C
match              oracle induction pattern on head 0's query row           C
copy               logits = head 0's query->label scores (perfect_copy)     A, B
layer1_copy        ideal layer-1 circuit + perfect copy                     B
=================  =======================================================  ===================

(A previous-token, B match, C copy; "layer 1" / "layer 2" are the paper's
one-indexed layers, ``blocks.0`` / ``blocks.1`` in hook names.)

Factorial framing.  ``control``, ``layer1``, ``copy`` and ``layer1_copy`` form a
2x2 design in the factors ``layer1`` (subcircuit A clamped) and ``copy``
(subcircuit C clamped); their ``factors`` let the statistics estimate each
clamp's main effect on the (log) learning time and their interaction (an
interaction ratio near 1 means the two speed-ups multiply; below 1, clamping
both helps more than the product).  ``prev_token`` and ``match`` are not
crossed with anything (the match clamp contains the layer-1 clamp's steps), so
their ``factors`` are left empty: the statistics compare them with the
control and in the extra pairs below, and leave them out of the factorial fit.

The knockout is applied in every arm, the copy arms included: under the copy
clamp the logits are head 0's scores alone, which the other layer-2 heads do
not affect, so knocking them out changes nothing there but keeps the arms
uniform.

Evaluation: the training distribution every 1e3 sequences (512 sequences per run; the
phase-change rule and the head scores come from it), the three held-out sets every 5e3
(128 each; their curves need less resolution, and evaluating them every 1e3 would cost
a quarter of the training time instead of a tenth).

Budgets.  With the authors' initialisation the clamped arms cross at 1.8e4-1.25e5
sequences, the control at 6.7e5-1.08e6 and prev_token at 3.8e5-8.2e5 (seeds 0-4, the
README's table).  So control and prev_token get 2e6 sequences (``Arm(n_sequences=...)``),
about twice their slowest crossing, and the other arms keep 6e5, several times theirs.

Stopping.  Every run stops 5e4 sequences plus a quarter of its crossing time
after it crosses (``StopAfterPhase(margin=50_000, relative=0.25)``): its threshold
phase time is exactly that of a run trained to its budget, and 5e4 (50
evaluations) + 25 % leaves the end of the drop on the curve for the sigmoid and
steepest-descent estimators (a later crossing has a wider drop).  A run that
never crosses trains to its budget and is censored there.

Run (30 runs; the five seeds of an arm train packed; most runs stop early)::

    clamp run studies/singh2024_subcircuits.py
    clamp run studies/singh2024_subcircuits.py --set arms.*.n_sequences=2000 --set seeds=0 --out /tmp/smoke   # smoke test
"""

from clamp import (Arm, FewShotConfig, ModelConfig, StopAfterPhase, Study, ideal_layer1, knockout_heads, match_clamp,
                   perfect_copy, prev_token_pattern_clamp)

ACTIVE_HEAD = 0  # the one layer-2 head left on

# Singh et al.'s model and optimiser: 2 layers x 8 heads, d_model 64, attention-only, pre-LN, RoPE;
# Adam, constant lr 1e-5, batch 32 (ModelConfig's and Arm's defaults, spelled out here).
# Their initialisation (init="singh2024": label embedding truncated normal std 0.02, LeCun-normal linear
# maps, zero biases, one random stream per parameter; docs/science.md §4) and separate random streams
# for classes, labels and orders, so that a change of one part leaves the others' draws unchanged.
MODEL = ModelConfig(n_layers=2, n_heads=8, d_model=64, attn_only=True, layernorm=True, positions="rope",
                    init="singh2024")
TASK = FewShotConfig(streams="independent")
OPTIM = dict(lr=1e-5, batch_size=32, schedule="constant")

SINGLE_HEAD = knockout_heads(layer=1, keep=[ACTIVE_HEAD])  # zero the values of the other 7 layer-2 heads
PREV_TOKEN = prev_token_pattern_clamp(layer=0, head=0)
LAYER1 = ideal_layer1(layer=1)
MATCH = match_clamp(layer=1, head=ACTIVE_HEAD)
COPY = perfect_copy(layer=1, head=ACTIVE_HEAD)


SLOW_ARMS_BUDGET = 2_000_000  # control and prev_token: see "Budgets" above


def _arm(name: str, clamps: list, factors: dict[str, bool], description: str, n_sequences: int | None = None) -> Arm:
    return Arm(name=name, model=MODEL, task=TASK, interventions=[SINGLE_HEAD, *clamps], factors=factors,
               description=description, n_sequences=n_sequences, **OPTIM)


STUDY = Study(
    name="singh2024_subcircuits",
    description=(
        "Singh et al. (2024) subcircuit clamps on a single active layer-2 head: which parts of the induction "
        "circuit must be learned together for the loss plateau and the abrupt phase change to appear. "
        "control/layer1/copy/layer1_copy form a 2x2 factorial design (factors layer1, copy)."
    ),
    arms=[
        _arm("control", [], {"layer1": False, "copy": False},
             "no clamp: previous-token (A), match (B) and copy (C) all learned", n_sequences=SLOW_ARMS_BUDGET),
        _arm("prev_token", [PREV_TOKEN], {},
             "layer-1 head 0's pattern clamped to perfect previous-token (step 1); step 2, B, C learned",
             n_sequences=SLOW_ARMS_BUDGET),
        _arm("layer1", [LAYER1], {"layer1": True, "copy": False},
             "layer 1 replaced by an ideal previous-token circuit (A); B and C learned"),
        _arm("match", [MATCH], {},
             "oracle induction pattern on the active head's query row (A and B); C learned"),
        _arm("copy", [COPY], {"layer1": False, "copy": True},
             "logits = the active head's query-to-label scores (C); A and B learned"),
        _arm("layer1_copy", [LAYER1, COPY], {"layer1": True, "copy": True},
             "ideal layer 1 and perfect copy (A and C); only B learned"),
    ],
    seeds=[0, 1, 2, 3, 4],
    n_sequences=600_000,     # the clamped arms; control and prev_token: SLOW_ARMS_BUDGET
    stop_after_phase=StopAfterPhase(margin=50_000, relative=0.25),
    eval_every=1_000,        # the training-distribution set (the phase-change rule reads it): every 1e3 sequences
    eval_size=512,
    heldout_eval_every=5_000,  # held-out pairs, classes and exemplars: every 5e3 (121 points a run; a fifth of the cost)
    checkpoint_every=50_000,  # 13 per run (~0.8 MB each with Adam state): resumable, heatmaps, progress measures
    control="control",
    # The primary family (Holm over these 5): every clamp against the control.  Declared on 2026-12-07, after
    # the first results of this study had been seen (before, all 9 comparisons were one family); the 4 pairs
    # below are the secondary family, corrected on their own.
    primary_comparisons=["prev_token", "layer1", "match", "copy", "layer1_copy"],
    comparisons=[
        ("layer1", "prev_token"),    # does writing the item (step 2) matter beyond attending to it (step 1)?
        ("match", "layer1"),         # what learning the match (B) costs once A is given
        ("layer1_copy", "layer1"),   # what learning the copy (C) costs once A is given
        ("layer1_copy", "copy"),     # what learning A costs once C is given
    ],
    heatmap_heads=["L0H0", f"L1H{ACTIVE_HEAD}"],
    heatmap_at=[0, 50_000, 200_000, 600_000, 2_000_000],
)
