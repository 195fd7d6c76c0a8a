"""Closed-loop clamps and a head scan on Singh et al.'s full model (2 layers x 8 heads).

Two questions on the few-shot task (docs/science.md §2), in one study:

1. **Which layer-1 heads drive the phase change?**  A scan (``clamp.scan``)
   knocks out each of the 8 heads of the paper's layer 1 (``blocks.0``) from
   initialisation, one arm per head (``ko__L0H0`` ... ``ko__L0H7``), in the full
   8+8-head model; ``control`` is the same model untouched.  The statistics rank
   the heads by how much their loss delays the phase change (time ratio vs
   control with CI, censoring-aware rank test, Holm over the 8 heads) and draw a
   layer x head heatmap (``plots/scan_ko_heatmap.png``).  Expectation: the
   previous-token heads come out on top -- unless the others are redundant
   enough to take over.
2. **Does the circuit persist once a clamp is released?**  With one active
   layer-2 head (the other 7 knocked out, as in Singh et al.'s subcircuit
   experiments), ``match_release`` clamps that head's query row to the oracle
   induction pattern from initialisation and releases it, *per run*, at the
   first evaluation at which that run's training loss (measured with the clamp
   on) falls below 0.4 ln 2 (``Window(stop=clamp.When(...))``).  Afterwards the
   head must produce the pattern itself: the loss either stays low (the
   previous-token and match subcircuits were learned under the clamp) or
   relapses to the ln 2 plateau.  ``single_head`` (no clamp) and ``match``
   (clamped throughout) bracket it.  A second phase rule times each run from its
   own release (``PhaseRule(relative_to="match_release:stop", persist="end")``):
   0 means it never relapsed; a run still above the threshold at the end is
   reported as relapsed.

Cost: 12 arms x 5 seeds of 1e6 sequences at lr 1e-5 (each run needs ~6e5-1e6
sequences to cross): 38 min wall, 4,002 s of CPU on 2 cores (the README has the results).  ``studies/singh2024_scan_small.py`` is the
same design on a small model that runs in minutes.

    clamp run studies/singh2024_scan.py
"""

import clamp
from clamp import Arm, FewShotConfig, ModelConfig, PhaseRule, Study, Window, When, knockout_heads, match_clamp

THRESHOLD = 0.4 * clamp.LN2  # Singh et al.'s learning-time threshold
N_HEADS = 8
ACTIVE_HEAD = 0

MODEL = ModelConfig(n_layers=2, n_heads=N_HEADS, d_model=64, attn_only=True, layernorm=True, positions="rope",
                    init="singh2024")
TASK = FewShotConfig(streams="independent")
OPTIM = dict(lr=1e-5, batch_size=32, schedule="constant")

SINGLE_HEAD = knockout_heads(layer=1, keep=[ACTIVE_HEAD])
RELEASE = Window(start=0, stop=When("train/loss", "<", THRESHOLD))  # per run: off at its first crossing

control = Arm(name="control", model=MODEL, task=TASK, description="full model, nothing knocked out", **OPTIM)
ARMS = [
    *clamp.scan(control=control, components=clamp.scan_heads(layer=0, n_heads=N_HEADS), prefix="ko"),
    Arm(name="single_head", model=MODEL, task=TASK, interventions=[SINGLE_HEAD], **OPTIM,
        description="one active layer-2 head, nothing clamped"),
    Arm(name="match", model=MODEL, task=TASK, interventions=[SINGLE_HEAD, match_clamp(layer=1, head=ACTIVE_HEAD)],
        **OPTIM, description="one active layer-2 head, match clamp throughout"),
    Arm(name="match_release", model=MODEL, task=TASK, **OPTIM,
        interventions=[SINGLE_HEAD, match_clamp(layer=1, head=ACTIVE_HEAD, name="match_release", windows=[RELEASE])],
        description="one active layer-2 head, match clamp released when that run's loss first falls below 0.4 ln 2"),
]

STUDY = Study(
    name="singh2024_scan",
    description=__doc__.split("\n\n")[1],
    arms=ARMS,
    seeds=[0, 1, 2, 3, 4],
    n_sequences=1_000_000,
    eval_every=1_000,
    eval_size=512,
    heldout_eval_every=5_000,
    checkpoint_every=50_000,
    comparisons=[("match_release", "single_head"), ("match", "single_head")],
    phase=[PhaseRule(), PhaseRule(relative_to="match_release:stop", persist="end")],
    heatmap_heads=["L0H0", "L1H0"],
)
