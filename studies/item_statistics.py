"""Do items with the statistics of real image features close the gap to Singh et al.'s timings?

Singh et al.'s items are frozen ResNet-18 features of Omniglot characters: non-negative,
of low effective dimension and clustered by alphabet.  clamp's default items are
isotropic Gaussian class means, and with the authors' own code on them the full model's
phase change comes at 6.5e5 sequences instead of the paper's 2.7e5 (docs/science.md §4).
Each arm here changes ONE property of the items (``clamp.tasks.items``), keeping their
norm, on the full model and on the single-active-head control, with the authors'
initialisation and independent random streams:

==================  ==========================================================
arm                 items
==================  ==========================================================
full / single       default: isotropic Gaussian class means
*_nonneg            absolute values (half-normal entries, as after a ReLU)
*_low_rank          class means in a random 16-dimensional subspace of 512
*_clustered         10 clusters ("alphabets"), within-cluster cosine about 0.7
*_all               all three together
==================  ==========================================================

The paper's crossings to compare with: full model ≈2.7e5, single-head control ≈3.1e5.
Each run is up to 8e5 sequences (the single-head control may not cross by then).

    clamp run studies/item_statistics.py
    clamp run studies/item_statistics.py --set n_sequences=2000 --set seeds=0 --out /tmp/smoke   # smoke test
"""

from clamp import Arm, FewShotConfig, ModelConfig, Study, knockout_heads

MODEL = ModelConfig(n_layers=2, n_heads=8, d_model=64, init="singh2024")
SINGLE_HEAD = knockout_heads(layer=1, keep=[0])
ITEMS = {
    "": {},
    "_nonneg": dict(nonneg=True),
    "_low_rank": dict(rank=16),
    "_clustered": dict(clusters=10, cluster_spread=0.3),
    "_all": dict(nonneg=True, rank=16, clusters=10, cluster_spread=0.3),
}


def _arm(model: str, suffix: str) -> Arm:
    items = ITEMS[suffix]
    task = FewShotConfig(streams="independent", **items)
    ivs = [SINGLE_HEAD] if model == "single" else []
    what = ", ".join(f"{k}={v}" for k, v in items.items()) or "default items"
    return Arm(name=f"{model}{suffix}", model=MODEL, task=task, interventions=ivs, lr=1e-5, batch_size=32,
               description=f"{'single active layer-2 head' if model == 'single' else 'full model'}: {what}")


STUDY = Study(
    name="item_statistics",
    description=("Which property of ResNet-like items (non-negative, low rank, clustered) moves the full model's and "
                 "the single-head control's phase change toward Singh et al.'s 2.7e5 / 3.1e5 sequences."),
    arms=[_arm(m, s) for m in ("full", "single") for s in ITEMS],
    seeds=[0, 1, 2],
    n_sequences=800_000,
    eval_every=2_000,
    eval_size=512,
    heldout_eval_every=20_000,
    checkpoint_every=100_000,
    control="full",
    comparisons=[("single_all", "single")],
)
