"""The design of ``singh2024_scan.py`` on a small model that runs in a few minutes on a laptop CPU.

Same arms -- a scan knocking out each head of layer 1 (``blocks.0``) from
initialisation, and a match clamp on the single active layer-2 head released
per run when its loss first falls below 0.4 ln 2 -- on the quickstart's model
(d_model 32, 2 layers x 4 heads, lr 1e-3; see ``studies/quickstart.py``),
3 seeds, 4e4 sequences::

    clamp run studies/singh2024_scan_small.py --out /tmp/triggers-scan
"""

import clamp
from clamp import Arm, FewShotConfig, ModelConfig, PhaseRule, Study, Window, When, knockout_heads, match_clamp

THRESHOLD = 0.4 * clamp.LN2
N_HEADS = 4
ACTIVE_HEAD = 0

MODEL = ModelConfig(n_layers=2, n_heads=N_HEADS, d_model=32)
TASK = FewShotConfig(n_classes=50, d_in=64)
OPTIM = dict(lr=1e-3)

SINGLE_HEAD = knockout_heads(layer=1, keep=[ACTIVE_HEAD])
RELEASE = Window(start=0, stop=When("train/loss", "<", THRESHOLD))

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
    name="singh2024_scan_small",
    description=__doc__.split("\n\n")[1],
    arms=ARMS,
    seeds=[0, 1, 2],
    n_sequences=40_000,
    eval_every=500,
    eval_size=256,
    checkpoint_every=10_000,
    comparisons=[("match_release", "single_head"), ("match", "single_head")],
    phase=[PhaseRule(), PhaseRule(relative_to="match_release:stop", persist="end")],
    heatmap_heads=["L0H0", "L1H0"],
)
