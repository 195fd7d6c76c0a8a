"""Benchmark of the foreign-model path: a Hugging Face GPT-2 at the flagship's size against the built-in model.

Why this file exists: a foreign model trains one run per process through
transformers' own forward, while the built-in model packs seeds on a run axis
with fused kernels; a researcher choosing between them needs the price.
``clamp bench --foreign`` measures sequences per second per core (batch 32,
Singh et al.'s few-shot task, the flagship's sizes: 2 layers x 8 heads, d_model
64) for

- ``builtin R=1`` and ``builtin R=<packing>``: the built-in model, no interventions;
- ``hf_gpt2``: ``hf_gpt2(n_layer=2, n_head=8, n_embd=64)`` (MLPs on, as GPT-2 has them), no interventions;
- ``hf_gpt2 hooks`` / ``hf_gpt2 nnsight``: the same with the flagship clamps (seven of
  eight layer-2 heads' values zeroed, the active head's query row clamped to the
  oracle induction pattern) through PyTorch hooks or an nnsight trace: their
  ratio is nnsight's overhead on the foreign model;
- ``builtin nnsight R=1``: the built-in model with the same clamps, for reference.

Configurations are timed in interleaved rounds; medians over rounds are reported.
"""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable

import torch

from clamp.bench.flagship import BATCH
from clamp.tasks import FewShotConfig


def _step(model: Any, mode: str, n_runs: int, task_cfg: FewShotConfig) -> Callable[[], Any]:
    from clamp.bench.flagship import flagship_interventions
    from clamp.training.config import TrainConfig
    from clamp.training.trainer import Trainer

    factory = None
    if mode in ("hooks", "nnsight"):
        from clamp.interventions import make_intervener

        factory = make_intervener(flagship_interventions(), task_cfg.build(), backend=mode)
    cfg = TrainConfig(n_sequences=10**9, eval_every=10**9, batch_size=BATCH)
    return Trainer(model, task_cfg, cfg, seeds=list(range(n_runs)), intervener_factory=factory).train_step


def run_foreign_bench(n_steps: int = 20, rounds: int = 5, warmup: int = 5, packing: int = 5,
                      log: Callable[[str], None] = print) -> dict[str, float]:
    """Sequences per second per core of each configuration (medians over interleaved rounds).

    Example:
        >>> # run_foreign_bench(n_steps=5, rounds=2)["hf_gpt2"]
    """
    from clamp.model.foreign import hf_gpt2
    from clamp.model.config import ModelConfig

    task_cfg = FewShotConfig()
    gpt2 = hf_gpt2(n_layer=2, n_head=8, n_embd=64)
    configs = {
        "builtin R=1": (ModelConfig(), "plain", 1),
        f"builtin R={packing}": (ModelConfig(), "plain", packing),
        "builtin nnsight R=1": (ModelConfig(), "nnsight", 1),
        "hf_gpt2": (gpt2, "plain", 1),
        "hf_gpt2 hooks": (gpt2, "hooks", 1),
        "hf_gpt2 nnsight": (gpt2, "nnsight", 1),
    }
    steps = {name: (_step(m, mode, R, task_cfg), R) for name, (m, mode, R) in configs.items()}
    for step, _ in steps.values():
        for _ in range(warmup):
            step()
    per_round: dict[str, list[float]] = {name: [] for name in steps}
    for i in range(rounds):
        for name, (step, _) in steps.items():
            start = time.perf_counter()
            for _ in range(n_steps):
                step()
            per_round[name].append((time.perf_counter() - start) / n_steps)
        log(f"  round {i + 1}/{rounds} done")
    threads = torch.get_num_threads()
    out = {name: BATCH * R / statistics.median(per_round[name]) / threads for name, (_, R) in steps.items()}
    ratios = lambda a, b: statistics.median(x / y for x, y in zip(per_round[a], per_round[b]))  # noqa: E731
    out["nnsight/hooks (hf_gpt2)"] = ratios("hf_gpt2 nnsight", "hf_gpt2 hooks")
    out["hooks/plain (hf_gpt2)"] = ratios("hf_gpt2 hooks", "hf_gpt2")
    return out


def main_foreign(n_steps: int, rounds: int, warmup: int, packing: int = 5) -> int:
    """Print the foreign-model table (``clamp bench --foreign``)."""
    print(f"\nforeign model ({rounds} interleaved rounds of {n_steps} steps; medians; batch {BATCH}, few-shot task):")
    res = run_foreign_bench(n_steps, rounds, warmup, packing)
    width = max(map(len, res))
    for name, v in res.items():
        unit = "x (time per step)" if "/" in name else "sequences/s/core"
        print(f"  {name:<{width}}  {v:10.2f} {unit}")
    hf, b1, bp = res["hf_gpt2"], res["builtin R=1"], res[f"builtin R={packing}"]
    print(f"  hf_gpt2 vs built-in: {hf / b1:.2f}x the built-in model's throughput at R=1, {hf / bp:.2f}x at R={packing}")
    return 0


__all__ = ["run_foreign_bench", "main_foreign"]
