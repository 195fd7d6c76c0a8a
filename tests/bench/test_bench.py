"""The benchmark runs end to end on a tiny setting (no timings are asserted)."""

from __future__ import annotations

import pytest

from clamp.bench.throughput import flops_per_sequence, harness_flops_per_step, main, packing_bound, ratio, run_bench
from clamp.bench.study import memory_at
from clamp.model.config import ModelConfig


def test_bench_runs_every_mode_once():
    rows, per_round = run_bench(runs=[1, 2], modes=["plain", "harness", "hook", "nnsight"], n_steps=1, warmup=0,
                                rounds=2, log=lambda _: None)
    assert [(r.mode, r.runs) for r in rows] == [(m, R) for R in (1, 2) for m in ("plain", "harness", "hook", "nnsight")]
    assert all(r.seq_per_s_per_core > 0 and r.rounds == 2 for r in rows)
    # the plain loop has no run axis: R runs take R times one run, round by round
    assert per_round[("plain", 2)] == [2 * t for t in per_round[("plain", 1)]]
    assert ratio(per_round, ("plain", 2), ("plain", 1)) == pytest.approx(2.0)
    assert ratio(per_round, ("nnsight", 3), ("hook", 3)) is None


def test_bench_cli_writes_csv(tmp_path, capsys):
    out = tmp_path / "bench.csv"
    assert main(["--runs", "1", "--modes", "harness", "--steps", "1", "--rounds", "1", "--warmup", "0",
                 "--no-profile", "--csv", str(out)]) == 0
    assert out.read_text().splitlines()[0].startswith("mode,runs,seq_per_s_per_core")
    printed = capsys.readouterr().out
    assert "matmul peak" in printed and "machine:" in printed and "compiled kernels:" in printed


def test_flops_count_matches_hand_count():
    cfg = ModelConfig(n_layers=1, n_heads=1, d_model=2, d_in=3, d_vocab=2, d_out=2, n_ctx=2)
    # per layer: qkv 2*T*D*3*H*dh = 48; scores+mix 2*2*H*T*T*dh = 32; out 2*T*H*dh*D = 16; unembed 2*T*D*C = 16,
    # all three times (forward, input and weight gradients); the item embedding 2*n_items*d_in*D twice (no input grad)
    assert flops_per_sequence(cfg, T=2, d_in=3, n_out=2) == 3.0 * (48 + 32 + 16 + 16) + 2.0 * 24
    assert flops_per_sequence(cfg, T=2, d_in=3, n_out=2, n_items=1) == 3.0 * (48 + 32 + 16 + 16) + 2.0 * 12


def test_study_memory_at_fraction_of_training():
    ev = [(0.0, {"job": 0, "seen": 10, "n_runs": 2, "pid": 1, "rss_mib": 50.0}),
          (0.5, {"job": 1, "seen": 10, "n_runs": 2, "pid": 2, "rss_mib": 70.0}),
          (1.0, {"job": 0, "seen": 100, "n_runs": 0, "pid": 1, "rss_mib": 55.0}),
          (2.0, {"job": 1, "seen": 100, "n_runs": 0, "pid": 2, "rss_mib": 72.0})]
    # 2 packs x 2 runs x 100 sequences: 10% = 40 run-sequences, reached once both packs are at 10
    assert memory_at(ev, {0: 2, 1: 2}, 100, 0.10) == 70.0
    assert memory_at(ev, {0: 2, 1: 2}, 100, 1.0) == 72.0


def test_packing_bound_known_values():
    # nothing grows with R: R times the throughput; everything grows with R: no gain
    assert packing_bound(2.0, 0.0, 5) == pytest.approx(5.0)
    assert packing_bound(2.0, 2.0, 5) == pytest.approx(1.0)
    assert packing_bound(1.85e-3, 0.4e-3, 5) == pytest.approx(5 * 1.85 / (1.85 + 4 * 0.4))
    assert packing_bound(3.0, 1.0, 1) == pytest.approx(1.0)


def test_harness_flops_count_the_table_rows_not_the_positions():
    from clamp.tasks import FewShotConfig

    task_cfg = FewShotConfig()
    cfg = ModelConfig().resolve(task_cfg.build().dims())
    rows = task_cfg.build().tables["train"].shape[0]
    body = flops_per_sequence(cfg, 5, task_cfg.d_in, task_cfg.n_labels, n_items=0) * 32
    assert harness_flops_per_step(task_cfg, cfg) == body + 4.0 * rows * task_cfg.d_in * cfg.d_model


@pytest.mark.slow
def test_bench_text_reports_the_long_context_shapes(capsys):
    assert main(["--text", "--steps", "1", "--rounds", "1", "--warmup", "0"]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith(("text C=256", "markov C=128"))]
    assert len(lines) == 2 and all("%" in ln for ln in lines)


def test_text_flops_count_matches_hand_count():
    from clamp.bench.text import train_flops_per_sequence

    cfg = ModelConfig(n_layers=2, n_heads=4, d_model=64, attn_only=True, d_vocab=256, d_out=256, n_ctx=256, d_in=0)
    # per layer: q, k, v, o 2*T*D*4D = 8.39M; scores + mix 4*T*T*D = 16.8M; unembedding 2*T*D*V = 8.39M; x3
    assert train_flops_per_sequence(cfg, 256) == 3.0 * (2 * (2 * 256 * 64 * 256 + 4 * 256 * 256 * 64) + 2 * 256 * 64 * 256)
