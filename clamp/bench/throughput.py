"""``clamp bench``: training throughput of the harness against a plain PyTorch loop, side by side.

Why this file exists: speed targets are checked by a benchmark that prints
figures measured in one process on one machine, never by timed assertions in
tests.  ``python -m clamp.bench`` (or ``clamp bench``) measures sequences per
second per core for

  (a) ``plain``: a plain PyTorch loop of the same model and task (:mod:`clamp.bench.plain`),
  (b) ``harness``: the harness with no interventions,
  (c) ``hook``: the harness with the flagship clamps applied by PyTorch forward hooks,
  (d) ``nnsight``: the harness with the same clamps applied in an nnsight trace,

at several packings R (runs on the run axis).  The flagship clamps are those of
the subcircuit study's ``match`` arm: seven of eight layer-2 heads knocked out
(values zeroed) and the active head's query row set to the oracle induction
pattern.  Modes (c) and (d) run the same compiled edits (the applier's
``hooks`` and ``nnsight`` backends), so their ratio is the cost of the trace.

Every configuration is built first and then timed in interleaved rounds (each
round runs every configuration once), and the median over rounds is reported,
so that a slow spell of a shared machine hits every configuration alike.  The
plain loop has no run axis: its R-run time is R times its one-run time.

It also reports: model FLOPs per step and the achieved FLOP/s against a
matrix-multiply peak measured in the same process; where the time of a step
goes (data, forward, backward, optimiser, evaluation); the cost of subnormal
floats in Adam; the machine; and, with ``--study``, the wall time and memory of
the whole flagship subcircuit study (:mod:`clamp.bench.study`).
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import torch
from torch import nn

from clamp.model import native
from clamp.bench.flagship import BATCH, STUDY_PACKING, make_step, trainer_for
from clamp.tasks.measures import per_run_loss
from clamp.model.config import ModelConfig
from clamp.tasks import FewShotConfig

MODES = ("plain", "harness", "hook", "nnsight")


def flops_per_sequence(cfg: ModelConfig, T: int, d_in: int, n_out: int, n_items: int | None = None) -> float:
    """Model FLOPs to train on one sequence: matrix products only, forward + backward.

    Every layer costs 3x its forward (forward, input gradient, weight gradient);
    the item embedding, whose input is data, 2x, at the ``n_items`` item
    positions (default: every position).  This is what any implementation must
    compute; the harness computes less for the item embedding (it embeds each
    item vector once per step, see :meth:`clamp.model.transformer.Transformer.embed`).
    """
    D, H, dh, L = cfg.d_model, cfg.n_heads, cfg.d_head_resolved, cfg.n_layers
    n_items = T if n_items is None else n_items
    layers = L * (2 * T * D * 3 * H * dh + 2 * 2 * H * T * T * dh + 2 * T * H * dh * D) + 2 * T * D * n_out
    return 3.0 * layers + 2.0 * (2 * n_items * d_in * D)


def matmul_peak_flops(n: int = 1024, reps: int = 10) -> float:
    """FLOP/s of a float32 ``n`` x ``n`` matmul on this process's threads (best of three)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = 0.0
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(reps):
            a @ b
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - start))
    return best


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


# --------------------------------------------------------------------------- throughput


@dataclass
class Row:
    mode: str
    runs: int
    seq_per_s_per_core: float
    ms_per_step: float
    gflop_per_s: float
    rounds: int


def run_bench(runs: Sequence[int], modes: Sequence[str], n_steps: int, warmup: int, rounds: int = 5,
              log: Callable[[str], None] = print) -> tuple[list[Row], dict[tuple[str, int], list[float]]]:
    """Time every (mode, R) in interleaved rounds.

    Returns the rows (medians over rounds) and the per-round seconds per step of
    each (mode, R), for ratios taken round by round.
    """
    task_cfg = FewShotConfig()
    cfg = ModelConfig().resolve(task_cfg.build().dims())
    flops_seq = flops_per_sequence(cfg, 5, task_cfg.d_in, task_cfg.n_labels, n_items=task_cfg.n_pairs + 1)
    threads = torch.get_num_threads()
    steps: dict[tuple[str, int], Callable[[], None]] = {}
    for R in runs:
        for mode in modes:
            if mode == "plain" and ("plain", 1) in steps:
                continue
            steps[(mode, 1 if mode == "plain" else R)] = make_step(mode, R, task_cfg)
    for step in steps.values():
        for _ in range(warmup):
            step()
    per_round: dict[tuple[str, int], list[float]] = {key: [] for key in steps}
    for i in range(rounds):
        for key, step in steps.items():
            start = time.perf_counter()
            for _ in range(n_steps):
                step()
            per_round[key].append((time.perf_counter() - start) / n_steps)
        log(f"  round {i + 1}/{rounds} done")
    for R in runs:  # the plain loop trains R runs one after another
        if "plain" in modes:
            per_round[("plain", R)] = [t * R for t in per_round[("plain", 1)]]
    rows = []
    for R in runs:
        for mode in modes:
            sec = statistics.median(per_round[(mode, R)])
            seqs = BATCH * R
            rows.append(Row(mode, R, seqs / sec / threads, sec * 1e3, seqs * flops_seq / sec / 1e9, rounds))
    return rows, per_round


def ratio(per_round: dict[tuple[str, int], list[float]], a: tuple[str, int], b: tuple[str, int],
          scale: float = 1.0) -> float | None:
    """Median over rounds of ``scale * time(a) / time(b)`` (both measured in each round)."""
    if a not in per_round or b not in per_round:
        return None
    return statistics.median(scale * x / y for x, y in zip(per_round[a], per_round[b]))


def packing_bound(t1: float, matmul_s: float, n_runs: int) -> float:
    """The most that packing ``n_runs`` runs can gain over running them one by one, from arithmetic alone.

    ``t1`` is the measured time of a one-run step and ``matmul_s`` the time its
    matrix products would take at the matmul peak.  If nothing but those products
    grew with the packing (every other cost fixed per step) and they ran at the
    peak, a packed step would take ``t1 + (n_runs - 1) * matmul_s``; the return
    value is the throughput ratio that gives.  Real packed steps also pay per run
    for attention, LayerNorm, Adam and the data, so measured ratios are lower.

    Example:
        >>> packing_bound(2.0, 0.5, 5)  # 5 * 2.0 / (2.0 + 4 * 0.5)
        2.5
    """
    return n_runs * t1 / (t1 + (n_runs - 1) * matmul_s)


def harness_flops_per_step(task_cfg: FewShotConfig, cfg: ModelConfig) -> float:
    """Matrix-product FLOPs of one harness training step of one run (batch :data:`BATCH`).

    As :func:`flops_per_sequence`, except that the item embedding is what the harness
    computes: each row of the batch's item table once (forward and weight gradient).
    """
    task = task_cfg.build()
    rows = task.tables["train"].shape[0]
    body = flops_per_sequence(cfg, 5, task_cfg.d_in, task_cfg.n_labels, n_items=0) * BATCH
    return body + 2.0 * (2 * rows * task_cfg.d_in * cfg.d_model)


# --------------------------------------------------------------------------- where the time goes


def profile_step(mode: str, n_runs: int, n_steps: int = 40, warmup: int = 5) -> dict[str, float]:
    """Median milliseconds of each part of a training step, and of one evaluation.

    Parts: ``data`` (sampling the batch), ``forward`` (with the interventions of
    ``mode``), ``loss``, ``backward``, ``optimizer``; ``evaluation`` is one
    evaluation of the study's sets (512 + 3 x 128 sequences per run) and
    ``evaluation_share`` its cost relative to the 1,000 sequences of training
    between two evaluations.
    """
    task_cfg = FewShotConfig()
    t = trainer_for(mode if mode != "plain" else "harness", n_runs, task_cfg, eval_size=512, heldout_eval_size=128)
    parts: dict[str, list[float]] = {k: [] for k in ("data", "forward", "loss", "backward", "optimizer")}
    for i in range(warmup + n_steps):
        marks = [time.perf_counter()]
        batch = t.next_batch()
        marks.append(time.perf_counter())
        logits = t.model(batch) if t.intervener is None else t.intervener.forward(batch, t.seen, (), True)[0]
        marks.append(time.perf_counter())
        loss = per_run_loss(logits, batch).sum()
        marks.append(time.perf_counter())
        t.opt.zero_grad(set_to_none=True)
        torch.autograd.backward(loss)
        marks.append(time.perf_counter())
        t.opt.step()
        marks.append(time.perf_counter())
        if i >= warmup:
            for k, a, b in zip(parts, marks, marks[1:]):
                parts[k].append(b - a)
    out = {k: statistics.median(v) * 1e3 for k, v in parts.items()}
    out["step"] = sum(out.values())
    evals = []
    for _ in range(5):
        start = time.perf_counter()
        t.evaluate()
        evals.append(time.perf_counter() - start)
    out["evaluation"] = statistics.median(evals[1:]) * 1e3
    out["evaluation_share"] = out["evaluation"] / (out["step"] * 1000 / BATCH)
    return out


# --------------------------------------------------------------------------- driver


def machine_line() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} torch thread(s), "
            f"python {platform.python_version()}, kernels {native.status().split(':')[0]}")


def _table(rows: list[Row], peak: float) -> str:
    lines = [f"{'mode':8s} {'R':>3s} {'seq/s/core':>11s} {'ms/step':>8s} {'GFLOP/s':>8s} {'% peak':>7s}"]
    for r in rows:
        lines.append(f"{r.mode:8s} {r.runs:3d} {r.seq_per_s_per_core:11,.0f} {r.ms_per_step:8.2f} {r.gflop_per_s:8.2f} "
                     f"{100 * r.gflop_per_s * 1e9 / peak:6.1f}%")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--stats" in argv:  # the statistics' validation suite (clamp.bench.stats_suite): its own options
        from clamp.bench.stats_suite import main as stats_main

        return stats_main([a for a in argv if a != "--stats"])
    p = argparse.ArgumentParser(prog="python -m clamp.bench", description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, nargs="+", default=[1, 5, 10, 30], help="packings R to measure")
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    p.add_argument("--steps", type=int, default=20, help="timed steps per configuration per round")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (medians are reported)")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=1, help="torch threads (per-core figures need 1)")
    p.add_argument("--csv", default="results/bench.csv", help="where to write the throughput table (default: results/bench.csv)")
    p.add_argument("--no-profile", action="store_true", help="skip the breakdown of a step")
    p.add_argument("--study", nargs="?", const="studies/singh2024_subcircuits.py", metavar="STUDY_FILE",
                   help="also run this study (default: the flagship subcircuit study) at its defaults and report "
                        "its wall time and memory")
    p.add_argument("--study-out", metavar="DIR", help="where the study's results go (default: a temporary folder)")
    p.add_argument("--jobs", type=int, help="parallel packs for --study (default: one per core)")
    p.add_argument("--foreign", action="store_true", help="measure the foreign-model path instead (HF GPT-2 vs the "
                   "built-in model, nnsight vs hooks; clamp.bench.foreign)")
    p.add_argument("--text", action="store_true", help="measure the long-context shapes instead (text at 256 "
                   "tokens, Markov chains at 128): throughput, fraction of the matmul peak, one evaluation "
                   "(clamp.bench.text)")
    p.add_argument("--stats", action="store_true", help="run the statistics' validation suite instead: size, power "
                   "and stopped-run agreement of the primary test, design by design (clamp.bench.stats_suite; "
                   "its options: --sims N, --n 3 4 5 8, --csv PATH)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    if args.foreign:
        from clamp.bench.foreign import main_foreign

        return main_foreign(args.steps, args.rounds, args.warmup, STUDY_PACKING)
    print(f"machine: {machine_line()}")
    print(f"compiled kernels: {native.status()}")
    peak = matmul_peak_flops()
    print(f"matmul peak (1024x1024 float32, {args.threads} thread(s)): {peak / 1e9:.1f} GFLOP/s")
    if args.text:
        from clamp.bench.text import main_text

        return main_text(args.steps, args.rounds, args.warmup, peak)
    task_cfg = FewShotConfig()
    cfg = ModelConfig().resolve(task_cfg.build().dims())
    flops_seq = flops_per_sequence(cfg, 5, task_cfg.d_in, task_cfg.n_labels, n_items=task_cfg.n_pairs + 1)
    own = harness_flops_per_step(task_cfg, cfg)
    print(f"model FLOPs per training step (batch {BATCH}, one run): {flops_seq * BATCH / 1e6:.1f} MFLOP "
          f"(the harness computes {own / 1e6:.1f}: it embeds each item-table row once)")
    print(f"\nthroughput ({args.rounds} interleaved rounds of {args.steps} steps per configuration; medians):")
    rows, per_round = run_bench(args.runs, args.modes, args.steps, args.warmup, args.rounds)
    print(_table(rows, peak))

    print("\nratios (medians of round-by-round ratios):")
    for R in args.runs:
        r = ratio(per_round, ("nnsight", R), ("hook", R))
        if r is not None:
            note = "  <- the study's packing" if R == STUDY_PACKING else ""
            print(f"  nnsight / hook time per step, R={R}: {r:.3f}{note}")
    r = ratio(per_round, ("harness", 1), ("plain", 1))
    if r is not None:
        print(f"  harness (no interventions) / plain loop time per step, R=1: {r:.3f}")
    for mode in args.modes:
        r = ratio(per_round, (mode, 1), (mode, STUDY_PACKING), scale=STUDY_PACKING)
        if r is not None and mode != "plain":
            print(f"  {mode}: {STUDY_PACKING} seeds packed vs {STUDY_PACKING} separate R=1 runs: {r:.2f}x the throughput")
    for mode in [m for m in ("harness", "hook", "nnsight") if m in args.modes and 1 in args.runs]:
        t1 = statistics.median(per_round[(mode, 1)])
        print(f"    {mode}: at most {packing_bound(t1, own / peak, STUDY_PACKING):.2f}x if only the matrix products "
              f"({own / 1e6:.1f} MFLOP a run-step, at the matmul peak) grew with R")
    best = max(rows, key=lambda row: row.gflop_per_s)
    print(f"  best: {best.gflop_per_s:.2f} GFLOP/s ({best.mode}, R={best.runs}) = "
          f"{100 * best.gflop_per_s * 1e9 / peak:.1f}% of the matmul peak")

    if not args.no_profile:
        print(f"\nwhere the time of a step goes (R={STUDY_PACKING}, median ms):")
        for mode in [m for m in ("harness", "nnsight") if m in args.modes] or ["harness"]:
            prof = profile_step(mode, STUDY_PACKING)
            parts = "  ".join(f"{k} {prof[k]:.2f}" for k in ("data", "forward", "loss", "backward", "optimizer"))
            print(f"  {mode:8s} step {prof['step']:.2f} = {parts}; one evaluation {prof['evaluation']:.1f} "
                  f"(= {100 * prof['evaluation_share']:.0f}% of the training between two evaluations)")

    print("\nsubnormal floats in Adam (us per step, 1e5 params):")
    for flush in (False, True):
        print(f"  flush_denormal={flush}: normal {subnormal_adam_us(flush, False):7.0f}   "
              f"subnormal {subnormal_adam_us(flush, True):7.0f}")

    os.makedirs(os.path.dirname(os.path.abspath(args.csv)), exist_ok=True)
    with open(args.csv, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([*asdict(rows[0]).keys(), "machine"])
        for r in rows:
            w.writerow([*(f"{v:.3f}" if isinstance(v, float) else v for v in asdict(r).values()), machine_line()])
    print(f"\nthroughput table written to {args.csv}")

    if args.study:
        from clamp.bench.study import time_study

        print(f"\nstudy {args.study} at its defaults:")
        res = time_study(args.study, out=args.study_out, jobs=args.jobs)
        print(f"  wall time {res['wall_s'] / 60:.1f} min ({res['wall_s']:.0f} s) with {res['jobs']} parallel pack(s); "
              f"{res['runs']} runs, status {res['statuses']}")
        print(f"  resident memory of the workers: {res['rss_10']:.0f} MiB at 10% of the study's sequences, "
              f"{res['rss_100']:.0f} MiB at 100% (largest worker; peak {res['peak']:.0f} MiB); "
              f"runner process {res['runner_peak']:.0f} MiB peak")
        print(f"  results in {res['out']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
