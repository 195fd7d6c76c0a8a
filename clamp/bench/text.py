"""Benchmark of the long-context shapes: language modelling on text, and Markov chains, at their training lengths.

Why this file exists: the few-shot flagship has 5 tokens per sequence, where clamp's own heads-last
kernels win; the text and Markov tasks have 64-256, where attention's T x T part dominates a step and
clamp runs batched matmuls that materialise the scores and the pattern (so that hooks can read and edit
them).  ``clamp bench --text`` measures, in interleaved rounds on one core, training steps and one
evaluation of

- ``text C=256``: bytes of the standard library's sources, 2 layers x 4 heads, d_model 64 (the
  Olsson-on-text issue's shape), and
- ``markov C=128``: in-context Markov chains, 2 layers x 2 heads, d_model 32 (the formation-law
  study's longest cell),

batch 32, one run, with the FLOPs the step's products need and their fraction of the matmul peak.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from clamp.bench.flagship import BATCH
from clamp.model.config import ModelConfig


def shapes() -> list[tuple[str, ModelConfig, Any]]:
    from clamp.tasks import MarkovConfig
    from clamp.tasks.text_config import TextConfig

    return [("text C=256", ModelConfig(n_layers=2, n_heads=4, d_model=64, attn_only=True, positions="rope"),
             TextConfig(n_ctx=256)),
            ("markov C=128", ModelConfig(n_layers=2, n_heads=2, d_model=32, attn_only=True),
             MarkovConfig(n_states=3, n_ctx=128, alpha=1.0))]


def train_flops_per_sequence(cfg: ModelConfig, T: int) -> float:
    """Forward + backward (3x forward) FLOPs of one sequence: projections, the full T x T attention products
    (the causal half is not subtracted), MLPs when present, the unembedding.

    Example:
        >>> cfg = ModelConfig(n_layers=1, n_heads=1, d_model=2, attn_only=True, d_vocab=3, d_out=3, n_ctx=4, d_in=0)
        >>> train_flops_per_sequence(cfg, 4)  # 3 x (2*4*2*8 + 4*4*4*2 + 2*4*2*3) = 3 x (128 + 128 + 48)
        912.0
    """
    D, L, V = cfg.d_model, cfg.n_layers, cfg.d_out
    per_layer = 2 * T * D * 4 * D + 4 * T * T * D + (0 if cfg.attn_only else 2 * T * D * 8 * D)
    return 3.0 * (L * per_layer + 2 * T * D * V)


def main_text(steps: int, rounds: int, warmup: int, peak: float) -> int:
    from clamp.training.config import TrainConfig
    from clamp.training.trainer import Trainer

    print(f"\nlong contexts (batch {BATCH}, one run, {rounds} interleaved rounds of {steps} steps; medians; "
          f"one evaluation = 256 sequences of each of the task's sets):")
    print(f"{'shape':14s} {'tokens/s':>10s} {'ms/step':>8s} {'GFLOP/s':>8s} {'% peak':>7s} {'evaluation s':>13s}")
    trainers = []
    for name, model, task in shapes():
        cfg = TrainConfig(n_sequences=10**9, eval_every=10**9, batch_size=BATCH, lr=1e-3, eval_size=256)
        trainers.append((name, task.n_ctx, Trainer(model, task, cfg, seeds=[0])))
    times: dict[str, list[float]] = {name: [] for name, _, _ in trainers}
    for r in range(rounds):
        for name, _, trainer in trainers:
            for _ in range(warmup if r == 0 else 1):
                trainer.train_step()
            start = time.perf_counter()
            for _ in range(steps):
                trainer.train_step()
            times[name].append((time.perf_counter() - start) / steps)
    for name, T, trainer in trainers:
        s = statistics.median(times[name])
        flops = train_flops_per_sequence(trainer.model.cfg, T) * BATCH
        start = time.perf_counter()
        trainer.evaluate()
        evaluation = time.perf_counter() - start
        print(f"{name:14s} {BATCH * T / s:>10,.0f} {s * 1e3:>8.1f} {flops / s / 1e9:>8.2f} "
              f"{100 * flops / s / peak:>6.1f}% {evaluation:>13.1f}")
    return 0


__all__ = ["main_text", "shapes", "train_flops_per_sequence"]
