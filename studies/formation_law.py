"""The formation law on in-context Markov chains: when the statistical induction head forms as batch and context vary.

Aoyama, Wilcox & Schneider (2025) find that the number of training tokens N at which induction heads
form grows as N = T · (B·C)^0.5 (B sequences per batch, C tokens per sequence), across natural and
synthetic data.  This study measures the law on Edelman et al.'s in-context Markov task, where a
2-layer attention-only model leaves the unigram plateau for the bigram solution once a layer-0
previous-token head feeds a layer-1 induction head (phase rule: ``markov/bigram_progress`` above 0.5).

- The grid: B in {8, 16, 32} sequences per batch × C in {32, 64, 128} tokens per sequence, 5 seeds per
  cell, the same model and learning rate everywhere; arms ``b<B>_c<C>``.
- The same law under a clamp: the grid's diagonal (B·C = 256, 1,024 and 4,096) with
  layer-0 head 0 clamped to a perfect previous-token pattern from the start; arms ``clamp_b<B>_c<C>``,
  each compared with its unclamped cell.

Budgets come from the law itself: calibrated on Edelman et al.'s cell (B = 32, C = 64: about 4,000
sequences, 256,000 tokens), each cell's predicted N is 256,000 · (B·C / 2,048)^0.5 tokens, and its
runs are given 2.5 times that (at least twice, as the law's check needs), stopping 1,000 sequences
+ 25 % after their phase change.

    clamp run studies/formation_law.py     # 60 runs; about 5 minutes on 2 CPU cores
    clamp law results/formation_law        # the fit: exponent with its interval, the clamp's change, the plot
"""

import math

from clamp import Arm, MarkovConfig, ModelConfig, StopAfterPhase, Study, prev_token_pattern_clamp

MODEL = ModelConfig(n_layers=2, n_heads=2, d_model=32)
BATCHES = (8, 16, 32)
CONTEXTS = (32, 64, 128)
DIAGONAL = ((8, 32), (16, 64), (32, 128))  # B·C = 256, 1,024, 4,096: the whole range of the grid
BASE_TOKENS, BASE_BC = 256_000, 32 * 64  # Edelman et al.'s cell: ~4,000 sequences of 64 tokens


def budget(batch: int, context: int) -> int:
    """2.5 times the law's predicted phase time, in sequences (rounded up to 500)."""
    predicted_tokens = BASE_TOKENS * math.sqrt(batch * context / BASE_BC)
    return 500 * math.ceil(2.5 * predicted_tokens / context / 500)


def _arm(batch: int, context: int, clamped: bool) -> Arm:
    task = MarkovConfig(n_states=3, n_ctx=context, alpha=1.0)
    return Arm(name=f"{'clamp_' if clamped else ''}b{batch}_c{context}", model=MODEL, task=task, lr=3e-3,
               batch_size=batch, n_sequences=budget(batch, context),
               interventions=[prev_token_pattern_clamp(layer=0, head=0)] if clamped else [],
               description=f"B = {batch}, C = {context}" + (", layer-0 head 0 clamped to previous-token" if clamped else ""))


STUDY = Study(
    name="formation_law",
    description=__doc__.split("\n\n")[1],
    arms=[_arm(b, c, False) for b in BATCHES for c in CONTEXTS] + [_arm(b, c, True) for b, c in DIAGONAL],
    seeds=[0, 1, 2, 3, 4],
    n_sequences=max(budget(b, c) for b in BATCHES for c in CONTEXTS),
    eval_every=125,
    eval_size=128,
    stop_after_phase=StopAfterPhase(margin=1_000, relative=0.25),
    control=None,
    primary_comparisons=[(f"clamp_b{b}_c{c}", f"b{b}_c{c}") for b, c in DIAGONAL],
    heatmap_heads=["L0H0", "L1H0"],
)
