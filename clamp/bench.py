"""Benchmark: training throughput of the harness against a plain PyTorch loop.

Why this file exists: speed targets are checked by a benchmark that prints
figures measured side by side in one process, never by timed assertions in
tests.  ``python -m clamp.bench`` (or ``clamp bench``) measures sequences per
second per core for

  (a) a minimal plain-PyTorch loop of the same model (written here, no harness),
  (b) the harness with no interventions,
  (c) the harness with the flagship clamps applied by plain forward hooks,
  (d) the harness with the same clamps through nnsight,

each at several packings R, plus FLOPs per step, achieved FLOP/s against a
matrix-multiply peak measured on this machine, and the cost of subnormal floats
in Adam with and without flushing them to zero.  It prints a table, writes it
as CSV and states the machine.

The flagship clamps here are those of the match-clamp arm of the subcircuit
study: seven of eight layer-2 heads knocked out (values zeroed) and the query
row of the remaining head's pattern set to the oracle induction pattern.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import platform
import resource
import sys
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from clamp.model import ModelConfig, Transformer
from clamp.tasks import Batch, FewShotConfig
from clamp.train import TrainConfig, Trainer

MODES = ("plain", "harness", "hook", "nnsight")


# --------------------------------------------------------------------------- (a) plain loop
class PlainAttention(nn.Module):
    def __init__(self, D: int, H: int) -> None:
        super().__init__()
        self.H, self.dh = H, D // H
        self.q, self.k, self.v, self.o = (nn.Linear(D, D, bias=False) for _ in range(4))

    def forward(self, x: Tensor, rot: tuple[Tensor, Tensor]) -> Tensor:  # (B, T, D)
        B, T, D = x.shape
        q, k, v = (m(x).view(B, T, self.H, self.dh).transpose(1, 2) for m in (self.q, self.k, self.v))
        cos, sin = rot
        half = self.dh // 2
        q = torch.cat([q[..., :half] * cos - q[..., half:] * sin, q[..., :half] * sin + q[..., half:] * cos], -1)
        k = torch.cat([k[..., :half] * cos - k[..., half:] * sin, k[..., :half] * sin + k[..., half:] * cos], -1)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(self.dh)
        att = att.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf")).softmax(-1)
        return self.o((att @ v).transpose(1, 2).reshape(B, T, D))


class PlainTransformer(nn.Module):
    """The Singh model written the ordinary way: no run axis, no hook points."""

    def __init__(self, d_in: int, n_labels: int, D: int = 64, H: int = 8, L: int = 2) -> None:
        super().__init__()
        self.item = nn.Linear(d_in, D)
        self.label = nn.Embedding(n_labels, D)
        self.ln = nn.ModuleList(nn.LayerNorm(D) for _ in range(L))
        self.attn = nn.ModuleList(PlainAttention(D, H) for _ in range(L))
        self.ln_f = nn.LayerNorm(D)
        self.out = nn.Linear(D, n_labels)
        self.dh = D // H

    def forward(self, items: Tensor, tokens: Tensor, item_mask: Tensor) -> Tensor:
        x = torch.where(item_mask[..., None], self.item(items), self.label(tokens))
        T, half = x.shape[1], self.dh // 2
        ang = torch.arange(T, dtype=torch.float32)[:, None] * (10_000.0 ** (-torch.arange(half) / half))
        rot = (ang.cos(), ang.sin())
        for ln, attn in zip(self.ln, self.attn):
            x = x + attn(ln(x), rot)
        return self.out(self.ln_f(x))


def _time_steps(step: Callable[[], None], n_steps: int, warmup: int) -> float:
    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(n_steps):
        step()
    return time.perf_counter() - start


def plain_loop_seconds(task_cfg: FewShotConfig, n_steps: int, warmup: int, batch_size: int = 32) -> float:
    """Seconds for ``n_steps`` Adam steps of :class:`PlainTransformer` on the few-shot task."""
    task = task_cfg.build()
    torch.manual_seed(0)
    model = PlainTransformer(task_cfg.d_in, task_cfg.n_labels)
    opt = torch.optim.Adam(model.parameters(), lr=1e-5)
    gen = torch.Generator().manual_seed(0)

    def step() -> None:
        b = task.sample(batch_size, gen)
        logits = model(b.items[0], b.tokens[0], b.item_mask[0])
        loss = F.cross_entropy(logits[:, -1], b.targets[0, :, -1])
        opt.zero_grad(set_to_none=True)
        torch.autograd.backward(loss)
        opt.step()

    return _time_steps(step, n_steps, warmup)


# --------------------------------------------------------------------------- (b, c, d) harness
def _hook_intervener_factory(active_head: int = 0) -> Callable[[Transformer], object]:
    """The match-clamp arm's interventions as plain PyTorch forward hooks (mode "hook")."""

    class HookIntervener:
        def __init__(self, model: Transformer) -> None:
            self.model = model
            self.batch: Batch | None = None
            attn = model.blocks[1].attn
            attn.hook_v.register_forward_hook(self._knockout)
            attn.hook_pattern.register_forward_hook(self._match)

        def _knockout(self, _m, _i, v: Tensor) -> Tensor:
            keep = torch.zeros(v.shape[3], dtype=v.dtype)
            keep[active_head] = 1
            return v * keep[:, None]

        def _match(self, _m, _i, p: Tensor) -> Tensor:
            b = self.batch
            oracle = F.one_hot(b.meta["correct_pos"], p.shape[-1]).to(p.dtype)  # (R, B, Tk)
            p = p.clone()
            p[:, :, active_head, -1, :] = oracle
            return p

        def forward(self, batch: Batch, seen: int, cache_names: Sequence[str], train: bool):
            self.batch = batch
            if cache_names:
                return self.model.run_with_cache(batch, cache_names)
            return self.model(batch), {}

        def firing_metrics(self) -> dict[str, Tensor]:
            return {}

    return HookIntervener


def _nnsight_intervener_factory():
    from clamp.interventions import knockout_heads, make_intervener, match_clamp

    interventions = [knockout_heads(layer=1, keep=[0]), match_clamp(layer=1, head=0)]
    return interventions, make_intervener


def harness_seconds(mode: str, n_runs: int, task_cfg: FewShotConfig, n_steps: int, warmup: int) -> float:
    """Seconds for ``n_steps`` training steps of an R-run packed model in the given mode."""
    factory = None
    if mode == "hook":
        factory = _hook_intervener_factory()
    elif mode == "nnsight":
        interventions, make_intervener = _nnsight_intervener_factory()
        factory = make_intervener(interventions, task_cfg.build())
    trainer = Trainer(ModelConfig(), task_cfg, TrainConfig(n_sequences=10**9, eval_every=10**9),
                      seeds=list(range(n_runs)), intervener_factory=factory)
    return _time_steps(trainer.train_step, n_steps, warmup)


# --------------------------------------------------------------------------- FLOPs and peak
def flops_per_sequence(cfg: ModelConfig, T: int, d_in: int, n_out: int) -> float:
    """Training FLOPs for one sequence (forward x 3 for forward + backward), matmul terms only."""
    D, H, dh, L = cfg.d_model, cfg.n_heads, cfg.d_head_resolved, cfg.n_layers
    fwd = 2 * T * d_in * D  # item embedding (computed at every position)
    fwd += L * (2 * T * D * 3 * H * dh + 2 * 2 * H * T * T * dh + 2 * T * H * dh * D)
    fwd += 2 * T * D * n_out
    return 3.0 * fwd


def matmul_peak_flops(n: int = 1024, reps: int = 10) -> float:
    """FLOP/s of a float32 n x n matmul on this process's threads."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - start)


def subnormal_adam_us(flush: bool, subnormal: bool, n: int = 100_000, reps: int = 50) -> float:
    """Microseconds per Adam step on ``n`` parameters whose squared gradients are subnormal (or not)."""
    torch.set_flush_denormal(flush)
    try:
        p = nn.Parameter(torch.randn(n))
        opt = torch.optim.Adam([p], lr=1e-5)
        p.grad = torch.full((n,), 1e-21 if subnormal else 1e-3)  # (1e-21)^2 = 1e-42 is subnormal in float32
        for _ in range(5):
            opt.step()
        start = time.perf_counter()
        for _ in range(reps):
            opt.step()
        return (time.perf_counter() - start) / reps * 1e6
    finally:
        torch.set_flush_denormal(True)  # clamp's training default


# --------------------------------------------------------------------------- driver
@dataclass
class Row:
    mode: str
    runs: int
    seq_per_s_per_core: float
    ms_per_step: float
    gflop_per_s: float


def run_bench(runs: Sequence[int], modes: Sequence[str], n_steps: int, warmup: int,
              log: Callable[[str], None] = print) -> list[Row]:
    """Measure every (mode, R) pair; returns the rows."""
    task_cfg = FewShotConfig()
    model_cfg = ModelConfig().resolve(task_cfg.build().dims())
    flops_seq = flops_per_sequence(model_cfg, 5, task_cfg.d_in, task_cfg.n_labels)
    rows = []
    for R in runs:
        for mode in modes:
            if mode == "plain":
                secs = plain_loop_seconds(task_cfg, n_steps, warmup) * R  # R runs, one after another
            else:
                secs = harness_seconds(mode, R, task_cfg, n_steps, warmup)
            seqs = n_steps * 32 * R
            row = Row(mode, R, seqs / secs, secs / n_steps * 1e3, seqs * flops_seq / secs / 1e9)
            rows.append(row)
            log(f"  {mode:8s} R={R:<3d} {row.seq_per_s_per_core:9.0f} seq/s/core  {row.ms_per_step:8.2f} ms/step"
                f"  {row.gflop_per_s:6.2f} GFLOP/s")
    return rows


def machine_line() -> str:
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
            f"{torch.get_num_threads()} torch thread(s), python {platform.python_version()}")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m clamp.bench", description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, nargs="+", default=[1, 5, 10, 30], help="packings R to measure")
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    p.add_argument("--steps", type=int, default=100, help="timed steps per measurement")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--threads", type=int, default=1, help="torch threads (per-core figures need 1)")
    p.add_argument("--csv", default="bench.csv", help="where to write the table")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"machine: {machine_line()}")
    peak = matmul_peak_flops()
    print(f"matmul peak (1024x1024 float32): {peak / 1e9:.1f} GFLOP/s")
    cfg = ModelConfig().resolve(FewShotConfig().build().dims())
    flops_seq = flops_per_sequence(cfg, 5, 512, 5)
    print(f"model FLOPs per training step (batch 32, one run): {flops_seq * 32 / 1e6:.1f} MFLOP")
    rows = run_bench(args.runs, args.modes, args.steps, args.warmup)
    by = {(r.mode, r.runs): r for r in rows}
    print("\nratios (time per sequence, lower is better for the first):")
    for R in args.runs:
        if ("hook", R) in by and ("nnsight", R) in by:
            print(f"  nnsight / hook at R={R}: {by['hook', R].seq_per_s_per_core / by['nnsight', R].seq_per_s_per_core:.3f}")
    if ("plain", 1) in by and ("harness", 1) in by:
        print(f"  harness / plain at R=1: {by['plain', 1].seq_per_s_per_core / by['harness', 1].seq_per_s_per_core:.3f}")
    if ("harness", 1) in by and ("harness", 5) in by:
        print(f"  throughput R=5 packed / R=1: {by['harness', 5].seq_per_s_per_core / by['harness', 1].seq_per_s_per_core:.2f}x")
    best = max(r.gflop_per_s for r in rows)
    print(f"  best achieved {best:.2f} GFLOP/s = {100 * best * 1e9 / peak:.1f}% of the matmul peak")
    print("\nsubnormal floats in Adam (us per step, 1e5 params):")
    for flush in (False, True):
        print(f"  flush_denormal={flush}: normal {subnormal_adam_us(flush, False):7.0f}   "
              f"subnormal {subnormal_adam_us(flush, True):7.0f}")
    print(f"\npeak resident memory: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    with open(args.csv, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["mode", "runs", "seq_per_s_per_core", "ms_per_step", "gflop_per_s", "machine"])
        for r in rows:
            w.writerow([r.mode, r.runs, f"{r.seq_per_s_per_core:.1f}", f"{r.ms_per_step:.3f}", f"{r.gflop_per_s:.3f}",
                        machine_line()])
    print(f"table written to {args.csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
