"""The benchmark runs end to end on a tiny setting (no timings are asserted)."""

from __future__ import annotations

from clamp.bench import flops_per_sequence, main, run_bench
from clamp.model import ModelConfig


def test_bench_runs_every_mode_once(tmp_path, capsys):
    rows = run_bench(runs=[2], modes=["plain", "harness", "hook", "nnsight"], n_steps=1, warmup=0, log=lambda _: None)
    assert [(r.mode, r.runs) for r in rows] == [("plain", 2), ("harness", 2), ("hook", 2), ("nnsight", 2)]
    assert all(r.seq_per_s_per_core > 0 for r in rows)


def test_bench_cli_writes_csv(tmp_path, capsys):
    out = tmp_path / "bench.csv"
    assert main(["--runs", "1", "--modes", "harness", "--steps", "1", "--warmup", "0", "--csv", str(out)]) == 0
    assert out.read_text().splitlines()[0].startswith("mode,runs,seq_per_s_per_core")
    assert "matmul peak" in capsys.readouterr().out


def test_flops_count_matches_hand_count():
    cfg = ModelConfig(n_layers=1, n_heads=1, d_model=2, d_in=3, d_vocab=2, d_out=2, n_ctx=2)
    # item 2*T*d_in*D = 24; qkv 2*T*D*3*H*dh = 48; scores+mix 2*2*H*T*T*dh = 32; out 2*T*H*dh*D = 16; unembed 2*T*D*C = 16
    assert flops_per_sequence(cfg, T=2, d_in=3, n_out=2) == 3.0 * (24 + 48 + 32 + 16 + 16)
